"""Lists: ``!members`` (organisations and countries; Matrix IDs only for people inside the
CoP, and not where outsiders read), ``!audit`` and the members' CSV export."""

from __future__ import annotations

from commands.args import Arg, cop_code, positive_int
from commands.context import Context
from commands.export import csv_bytes, exporter, utc_cell
from commands.membership.render import cop_title, local_time
from commands.membership.rules import country_name
from commands.registry import Family, Place
from commands.roles import Role
from commands.scope import cop_arg
from commands.text import Message, plural
from config.models import CopConfig, Settings
from storage import announce as announce_store
from storage import membership as ms
from storage import repo
from storage.models import AuditEntry

family = Family()
MAX_AUDIT = 200
MEMBER_COLUMNS = [
    "cop", "user", "organisation", "country", "type", "status", "applied_at_utc",
    "decided_at_utc",
]  # fmt: skip


@family.command(
    "members",
    help="List the organisations and countries of a CoP's members.\n"
    "Members of the CoP (and its moderators) also see Matrix IDs, except in rooms "
    "where people outside the CoP could read them.",
    section="Membership",
    args=[Arg("cop", cop_code, optional=True, metavar="[COP]")],
    role=Role.MEMBER,
    any_cop=True,
    cop=cop_arg(topic="members"),
    examples=["!members", "!members HDEV"],
)
async def members(ctx: Context, cop: CopConfig) -> None:
    target = cop
    inside = ctx.scope is not None and ctx.scope.role >= Role.MEMBER
    private_place = ctx.place in (Place.DM, Place.MANAGEMENT, Place.COP_ROOM)
    show_ids = inside and private_place
    entries = await ms.members_of(ctx.session, target.code)
    count = plural(len(entries), "member")
    msg = Message().append(cop_title(target)).text(f": {count}")
    items = []
    for entry in entries:
        person = entry.person
        item = Message().text((person.org if person else None) or "organisation not given")
        item.text(" — ").text(country_name(person.country if person else None))
        if show_ids:
            item.text(" — ").text(entry.user_id)
        items.append(item)
    if items:
        msg.text(":").bullets(items)
    else:
        msg.text(".").br()
    moderators = sorted((await ms.moderators_by_cop(ctx.session)).get(target.code, {}))
    if moderators and show_ids:
        msg.text("Moderators: ").text(", ".join(moderators)).text(".")
    elif moderators:
        msg.text(f"Moderators: {len(moderators)}.")
    else:
        msg.text("Moderators: the BBWT Secretariat.")
    if not show_ids and inside:
        msg.br().text("(Matrix IDs are shown only in the CoP's room or a direct message.)")
    await ctx.reply(msg)


# --- audit -----------------------------------------------------------------------------------
@family.command(
    "audit",
    help="Show the last admin actions (approvals, rejections, removals, role changes).\n"
    "Moderators see the actions in their own CoPs.",
    section="Moderation",
    args=[Arg("count", positive_int, optional=True, default=10, metavar="[N]")],
    role=Role.MODERATOR,
    places=Place.PRIVATE,
    examples=["!audit", "!audit 50"],
)
async def audit(ctx: Context, count: int) -> None:
    count = min(count, MAX_AUDIT)
    cops = None if ctx.is_admin else set((await ctx.roles()).cops(Role.MODERATOR))
    entries = await repo.recent_audit(ctx.session, count, cops)
    if not entries:
        await ctx.reply(
            "The audit log has no entries yet" + ("." if cops is None else " for your CoPs.")
        )
        return
    zone = ctx.settings.secretariat.timezone
    last = "The last action" if len(entries) == 1 else f"The last {len(entries)} actions"
    msg = Message(f"{last} (times in {zone}):")
    msg.bullets(audit_line(ctx.settings, entry) for entry in entries)
    await ctx.reply(msg)


AUDIT_VERBS = {
    "approve": "approved",
    "reject": "turned down",
    "remove": "removed",
    "mod-add": "made a moderator:",
    "mod-remove": "took the moderator role from",
}


def audit_line(settings: Settings, entry: AuditEntry) -> Message:
    line = Message(local_time(settings, entry.at)).text(" · ").text(entry.actor).text(" ")
    line.text(AUDIT_VERBS.get(entry.action, entry.action))
    if entry.target:
        line.text(" ").text(entry.target)
    if entry.cop_code:
        line.text(" · ").bold(entry.cop_code)
    if entry.detail:
        line.text(" · ").italic(entry.detail)
    return line


@exporter("members", "members and applications with their profiles")
async def export_members(ctx: Context, cops: list[str]) -> tuple[str, bytes]:
    """Members and applications (any status) with their profiles."""
    rows = [
        [
            membership.cop_code,
            membership.user_id,
            person.org if person else "",
            person.country if person else "",
            person.authority_type if person else "",
            membership.status,
            utc_cell(membership.applied_at),
            utc_cell(membership.decided_at),
        ]
        for membership, person in await announce_store.memberships_of_cops(ctx.session, cops)
    ]
    return "members", csv_bytes(MEMBER_COLUMNS, rows)
