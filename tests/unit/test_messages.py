"""Replies: user text is escaped and can never ping a whole room."""

from __future__ import annotations

from commands.text import Message, plural


def test_user_text_is_escaped_in_the_html_body() -> None:
    msg = Message("Title: ").text('<script>alert("x")</script> & <b>bold</b>')
    assert "<script>" not in msg.html
    assert "&lt;script&gt;" in msg.html
    assert "&amp;" in msg.html
    assert msg.plain == 'Title: <script>alert("x")</script> & <b>bold</b>'


def test_at_room_in_any_text_is_defused_in_both_bodies() -> None:
    msg = Message("Hello @room and @ROOM").bold("@room")
    assert "@room" not in msg.plain.lower()
    assert "@room" not in msg.html.lower()
    assert msg.content()["m.mentions"] == {}


def test_links_only_allow_web_and_matrix_content_urls() -> None:
    good = Message().link("https://example.org/?a=1&b=2", "site")
    assert '<a href="https://example.org/?a=1&amp;b=2">site</a>' == good.html
    bad = Message().link("javascript:alert(1)", "click")
    assert "<a " not in bad.html


def test_a_reply_points_at_the_command_and_is_a_notice() -> None:
    content = Message("ok").content(reply_to="$cmd")
    assert content["msgtype"] == "m.notice"
    assert content["m.relates_to"] == {"m.in_reply_to": {"event_id": "$cmd"}}
    assert content["format"] == "org.matrix.custom.html"


def test_bullets_make_an_html_list_and_a_plain_list() -> None:
    msg = Message("Items:").bullets(["<one>", Message().bold("two")])
    assert msg.html == "Items:<ul><li>&lt;one&gt;</li><li><strong>two</strong></li></ul>"
    assert msg.plain == "Items:\n• <one>\n• two"


def test_counts_agree_with_their_noun() -> None:
    assert plural(1, "event") == "1 event"
    assert plural(0, "event") == "0 events"
    assert plural(2, "event") == "2 events"
    assert plural(1, "person", "people") == "1 person"
    assert plural(3, "person", "people") == "3 people"
