"""Prometheus metrics, kept in a registry of their own (no module-level state)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.commands = Counter(
            "bbwt_commands",
            "Commands handled, by command and outcome",
            ["command", "outcome"],
            registry=r,
        )
        self.command_seconds = Histogram(
            "bbwt_command_seconds",
            "Time from receiving a command to committing its effects and reply",
            ["command"],
            buckets=(0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
            registry=r,
        )
        self.sync_lag = Gauge(
            "bbwt_sync_lag_seconds",
            "Age of the newest event when the bot stored it (how far behind the sync is)",
            registry=r,
        )
        self.last_sync = Gauge(
            "bbwt_last_sync_timestamp_seconds", "When the last /sync succeeded", registry=r
        )
        self.gaps = Counter(
            "bbwt_sync_gaps",
            "Limited sync timelines whose gap was read through /messages",
            registry=r,
        )
        self.gap_events = Counter(
            "bbwt_sync_gap_events", "Events recovered by paging through a gap", registry=r
        )
        self.outbox_depth = Gauge("bbwt_outbox_depth", "Messages waiting to be sent", registry=r)
        self.sent = Counter(
            "bbwt_sent", "Matrix sends that succeeded, by kind", ["kind"], registry=r
        )
        self.rate_limited = Counter(
            "bbwt_rate_limited", "M_LIMIT_EXCEEDED answers from the homeserver", registry=r
        )
        self.quarantined = Counter(
            "bbwt_quarantined_events",
            "Received events that could not be stored and were set aside",
            registry=r,
        )
        self.undecryptable = Counter(
            "bbwt_undecryptable_events",
            "Encrypted events the bot could not decrypt when they arrived",
            registry=r,
        )
        self.decrypted_late = Counter(
            "bbwt_decrypted_late_events",
            "Parked encrypted events that opened once their key arrived",
            registry=r,
        )
        self.undecryptable_notices = Counter(
            "bbwt_undecryptable_notices",
            "Notices telling someone that the bot could not read their message",
            registry=r,
        )
        self.active = Gauge(
            "bbwt_active",
            "1 while this process holds the leader lease (syncs and sends), 0 on standby",
            registry=r,
        )
        self.errors = Counter(
            "bbwt_errors", "Errors, by where they happened", ["where"], registry=r
        )

        self._handled: dict[tuple[str, str], tuple[Counter, Histogram]] = {}

    def handled(self, command: str, outcome: str, seconds: float) -> None:
        """A command handled: counted by command and outcome, its time observed. The two
        labelled series are looked up once per pair (each ``labels`` call takes a lock and
        builds its key: about 2 % of a backlog's ``!help``)."""
        series = self._handled.get((command, outcome))
        if series is None:
            series = (
                self.commands.labels(command, outcome),
                self.command_seconds.labels(command),
            )
            self._handled[(command, outcome)] = series
        series[0].inc()
        series[1].observe(seconds)

    def render(self) -> bytes:
        return generate_latest(self.registry)
