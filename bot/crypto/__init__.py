"""End-to-end encryption for the bot: its crypto store in the database, cross-signing,
encrypted attachments and the handling of messages it cannot decrypt.

matrix-nio (with its ``e2e`` extra, vodozemac) does the Olm/Megolm work; this package keeps
its state in the bot's own database (so an active/standby pair shares one device) and adds
what nio 0.26 lacks: cross-signing of the bot's device and a policy for undecryptable
messages.
"""
