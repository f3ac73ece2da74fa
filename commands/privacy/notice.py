"""``!privacy``: the privacy notice — who answers for the data, what is kept, why, for how
long, and how to get a copy or have it erased. Retention periods come from the
configuration, so the notice always says what the bot really does."""

from __future__ import annotations

from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

from commands.context import Context
from commands.registry import Family, Place
from commands.text import Message, plural
from config.models import DAYS_PER_YEAR, Settings

family = Family()


def span(delta: timedelta) -> str:
    """``30 days``, ``2 years``, ``12 hours``: a retention period as people say it."""
    days, seconds = delta.days, delta.seconds
    if seconds == 0 and days and days % DAYS_PER_YEAR == 0:
        years = days // DAYS_PER_YEAR
        return plural(years, "year")
    if seconds == 0 and days:
        return plural(days, "day")
    hours = round(delta.total_seconds() / 3600)
    return plural(hours, "hour")


def day(settings: Settings, when: datetime) -> str:
    """A date as the Secretariat reads it (its time zone), e.g. ``2031-03-21``."""
    return when.astimezone(ZoneInfo(settings.secretariat.timezone)).strftime("%Y-%m-%d")


def notice(settings: Settings, prefix: str) -> Message:
    p = settings.privacy
    msg = Message("🔒 ").bold("Your data and this bot")
    msg.para().bold("Who is responsible: ").text(p.controller)
    msg.para().bold("What I keep about you, and why")
    msg.bullets(
        [
            Message("Your profile (organisation, country, type of authority): to check that ").text(
                "your organisation may join a CoP (only contracting authorities may)."
            ),
            Message("Your CoP memberships, applications and moderator roles: to keep each ").text(
                "CoP room members-only and let the moderators decide on applications."
            ),
            Message("Your event answers, attendance, guest invitations and calendar link: ").text(
                "for seats, waiting lists, reminders and your calendar feed."
            ),
            Message("The market intelligence you share: for your CoP."),
            Message("Your travel claims, their lines and receipts: to reimburse your travel."),
            Message("The commands you send me (and what you write in our direct chat) and ").text(
                "what I send you: to carry out each command exactly once."
            ),
            Message("A log of decisions (approvals, claims, removals): for accountability."),
        ]
    )
    msg.bold("How long")
    msg.bullets(
        [
            Message("The text of your commands: ").text(
                f"{span(p.inbound_retention)} after I have handled them."
            ),
            Message("My copies of the messages and files I send: ").text(
                f"{span(p.outbox_retention)} after they were delivered."
            ),
            Message(f"The log: {span(p.audit_retention)}."),
            Message("Travel claims: ")
            .text(f"{span(settings.claims.retention)} after payment, rejection or withdrawal, ")
            .text("then I delete them. They are financial records: the EU Financial ")
            .text("Regulation requires supporting documents to be kept for at least five years."),
            Message("Everything else: as long as you take part. ")
            .text(f"{span(p.member_retention)} after you have left (and are no member, ")
            .text("applicant, moderator or guest of an event to come), I erase it."),
        ]
    )
    msg.bold("Your rights").text(" (GDPR, Art. 15 to 17)")
    msg.bullets(
        [
            Message()
            .code(f"{prefix}mydata")
            .text(" sends you a copy of everything I store about you."),
            Message()
            .code(f"{prefix}forgetme")
            .text(" erases your data at once, after you confirm. Travel claims and log ")
            .text("entries are kept under a pseudonym until their time is up; intel you ")
            .text("shared stays for the community without your name, or is deleted if you ")
            .text("ask (")
            .code(f"{prefix}forgetme confirm remove-items")
            .text(")."),
            Message("Correct your profile any time with ").code(f"{prefix}profile set").text("."),
        ]
    )
    return msg


@family.command(
    "privacy",
    section="Privacy",
    help="How I handle your personal data: who is responsible, what I keep, why, for how "
    "long, and how to get a copy or have it erased.",
    places=Place.EVERYWHERE,
    examples=["!privacy"],
)
async def privacy(ctx: Context) -> None:
    await ctx.reply(notice(ctx.settings, ctx.prefix))
