#!/usr/bin/env node
// dm-roundtrip.mjs: an Element-like Matrix test client for end-to-end tests.
//
// Built on matrix-js-sdk 43 with its Rust crypto (the stack of Element Web). It logs in,
// sets up its own cross-signing, opens an encrypted DM with a bot (or joins an existing
// room), sends messages, waits for the bot's decrypted replies, optionally reacts to an
// event, prints ONE JSON object on stdout and exits. Everything else goes to stderr.
//
// Exit codes: 0 every message got a decrypted reply (and every reaction was sent),
// 1 something failed (see "errors"), 2 the overall timeout expired, 3 bad arguments.
//
// Run `node dm-roundtrip.mjs --help` for the options. tests/e2e/test_element_client.py drives
// it (`./dev test` installs it with `npm ci`); it needs Node 20 or newer.

const T0 = performance.now(); // ~ms since process start (performance.timeOrigin)
const since = () => Math.round(performance.now());

// ---------------------------------------------------------------------------------------
// stdout is reserved for the single JSON result: route every console method to stderr
// BEFORE matrix-js-sdk (loglevel binds console methods when its loggers are created) and
// the wasm crypto (tracing -> console.*) are imported.
// ---------------------------------------------------------------------------------------
const VERBOSE = process.argv.includes("--verbose") || process.env.JSCLIENT_VERBOSE === "1";
const QUIET_LEVELS = new Set(["log", "info", "debug", "trace"]);
for (const level of ["log", "info", "debug", "trace", "warn", "error"]) {
    console[level] = (...args) => {
        if (!VERBOSE && QUIET_LEVELS.has(level)) return;
        process.stderr.write(args.map((a) => (typeof a === "string" ? a : inspect(a))).join(" ") + "\n");
    };
}
function inspect(value) {
    if (value instanceof Error) return value.stack || String(value);
    try {
        return JSON.stringify(value);
    } catch {
        return String(value);
    }
}
function note(msg) {
    process.stderr.write(`[dm-roundtrip +${since()}ms] ${msg}\n`);
}

// Node 20: matrix-js-sdk 43 targets Node 22 and uses Promise.withResolvers (ES2024).
if (typeof Promise.withResolvers !== "function") {
    Promise.withResolvers = function withResolvers() {
        let resolve;
        let reject;
        const promise = new this((res, rej) => {
            resolve = res;
            reject = rej;
        });
        return { promise, resolve, reject };
    };
}

// ---------------------------------------------------------------------------------------
// Options
// ---------------------------------------------------------------------------------------
const USAGE = `usage: node dm-roundtrip.mjs [JSON | --json JSON | --json-file PATH | --json -] [options]

  --homeserver URL        e.g. http://127.0.0.1:8008 (JSON: homeserver)
  --user ID               @alice:localhost or alice (JSON: user_id)
  --password PW           log in with a password (JSON: password)
  --access-token TOKEN    or use an existing token (JSON: access_token); its device must
                          not have uploaded keys yet (the crypto store lives only in this
                          process), e.g. the device of an admin-API registration
  --device-id ID          the token's device (default: from /account/whoami)
  --bot ID                the bot's user id (JSON: bot)
  --message TEXT          a message to send; repeat for several (JSON: messages: [...])
  --react-to EVENT_ID     send an m.reaction annotation (m.annotation) to this event;
                          "latest" = the newest message from the bot in the room when the
                          step runs. Flags run in command-line order, e.g.
                          --react-to latest --message "!rsvp list" reacts first.
  --reaction-key KEY      the key of the following --react-to (default ✅)
  --reaction-match TEXT   with "latest": the newest bot message whose body contains TEXT
  --await-reaction-reply  after the following --react-to, wait for a new bot message
  --mode all|signed       device isolation: all = AllDevicesIsolationMode (lenient),
                          signed = OnlySignedDevicesIsolationMode (JSON: mode; default all)
  --timeout SECONDS       overall deadline; the process always exits by then (default 60)
  --reply-timeout SECONDS how long to wait for an m.in_reply_to reply to each message before
                          taking any new bot message instead (default: min(20, timeout))
  --room ROOM_ID          join this existing room instead of creating a DM (JSON: room_id)
  --encrypt always|auto   DM encryption: always (default), or auto = like Element Web, only
                          when the bot has published device keys
  --no-cross-signing      do not bootstrap this client's cross-signing
  --store memory|indexeddb crypto store: in-memory (default) or fake-indexeddb
  --device-name NAME      display name of a new device (default "bbwt jsclient")
  --verbose               matrix-js-sdk and crypto debug logs on stderr

JSON keys are the long option names with "_" (user_id, access_token, device_id, room_id,
reply_timeout, cross_signing: false, ...), plus "messages": ["..."], "reactions":
[{"event_id": "$x" | "latest", "key": "✅", "match": "text", "await_reply": true}], or an
ordered "steps": [{"send": "text"}, {"react": {"event_id": "latest", "key": "✅"}}].
Without "steps" the messages are sent first, then the reactions run.`;

class UsageError extends Error {}

async function readStdin() {
    const chunks = [];
    for await (const chunk of process.stdin) chunks.push(chunk);
    return Buffer.concat(chunks).toString("utf8");
}

async function parseOptions(argv) {
    const opts = {};
    const cliSteps = [];
    let pendingReaction = { key: "✅", await_reply: false };
    const take = (i, name) => {
        if (i + 1 >= argv.length) throw new UsageError(`${name} needs a value`);
        return argv[i + 1];
    };
    let json = null;
    for (let i = 0; i < argv.length; i++) {
        const arg = argv[i];
        switch (arg) {
            case "-h":
            case "--help":
                process.stderr.write(USAGE + "\n");
                process.exit(0);
                break;
            case "--json": {
                const value = take(i++, arg);
                json = value === "-" ? await readStdin() : value;
                break;
            }
            case "--json-file": {
                const { readFile } = await import("node:fs/promises");
                json = await readFile(take(i++, arg), "utf8");
                break;
            }
            case "--homeserver": opts.homeserver = take(i++, arg); break;
            case "--user": opts.user_id = take(i++, arg); break;
            case "--password": opts.password = take(i++, arg); break;
            case "--access-token": opts.access_token = take(i++, arg); break;
            case "--device-id": opts.device_id = take(i++, arg); break;
            case "--bot": opts.bot = take(i++, arg); break;
            case "--message": cliSteps.push({ send: take(i++, arg) }); break;
            case "--react-to":
                cliSteps.push({ react: { ...pendingReaction, event_id: take(i++, arg) } });
                pendingReaction = { key: "✅", await_reply: false };
                break;
            case "--reaction-key": pendingReaction.key = take(i++, arg); break;
            case "--reaction-match": pendingReaction.match = take(i++, arg); break;
            case "--await-reaction-reply": pendingReaction.await_reply = true; break;
            case "--mode": opts.mode = take(i++, arg); break;
            case "--timeout": opts.timeout = Number(take(i++, arg)); break;
            case "--reply-timeout": opts.reply_timeout = Number(take(i++, arg)); break;
            case "--room": opts.room_id = take(i++, arg); break;
            case "--encrypt": opts.encrypt = take(i++, arg); break;
            case "--no-cross-signing": opts.cross_signing = false; break;
            case "--store": opts.store = take(i++, arg); break;
            case "--device-name": opts.device_name = take(i++, arg); break;
            case "--verbose": opts.verbose = true; break;
            default:
                if (arg.trimStart().startsWith("{") && json === null) json = arg;
                else throw new UsageError(`unknown argument ${JSON.stringify(arg)}`);
        }
    }
    let jsonSteps = [];
    if (json !== null) {
        let parsed;
        try {
            parsed = JSON.parse(json);
        } catch (e) {
            throw new UsageError(`the JSON argument is not valid JSON: ${e.message}`);
        }
        if (!parsed || typeof parsed !== "object" || Array.isArray(parsed)) {
            throw new UsageError("the JSON argument must be an object");
        }
        // Command-line flags win over JSON; JSON steps run before command-line steps.
        const { messages = [], reactions = [], steps = null, user, ...rest } = parsed;
        for (const [k, v] of Object.entries(rest)) if (opts[k] === undefined) opts[k] = v;
        if (user !== undefined && opts.user_id === undefined) opts.user_id = user;
        if (!Array.isArray(messages) || !Array.isArray(reactions) || (steps !== null && !Array.isArray(steps))) {
            throw new UsageError("messages, reactions and steps must be lists");
        }
        jsonSteps = steps ?? [...messages.map((send) => ({ send })), ...reactions.map((react) => ({ react }))];
    }
    opts.steps = [...jsonSteps, ...cliSteps].map((step) =>
        step && typeof step === "object" && step.react && typeof step.react === "object"
            ? { react: { key: "✅", await_reply: false, ...step.react } }
            : step,
    );
    opts.mode ??= "all";
    opts.timeout ??= 60;
    opts.reply_timeout ??= Math.min(20, opts.timeout);
    opts.encrypt ??= "always";
    opts.cross_signing ??= true;
    opts.store ??= "memory";
    opts.device_name ??= "bbwt jsclient";

    const problems = [];
    if (!opts.homeserver) problems.push("homeserver is required");
    if (!opts.user_id && !opts.access_token) problems.push("user_id is required");
    if (!opts.password && !opts.access_token) problems.push("give password or access_token");
    if (!opts.bot) problems.push("bot is required");
    if (!["all", "signed"].includes(opts.mode)) problems.push("mode must be all or signed");
    if (!["always", "auto"].includes(opts.encrypt)) problems.push("encrypt must be always or auto");
    if (!["memory", "indexeddb"].includes(opts.store)) problems.push("store must be memory or indexeddb");
    if (!(opts.timeout > 0)) problems.push("timeout must be a positive number of seconds");
    if (!(opts.reply_timeout > 0)) problems.push("reply_timeout must be a positive number of seconds");
    for (const step of opts.steps) {
        const ok =
            (step && typeof step.send === "string") ||
            (step && step.react && typeof step.react.event_id === "string" && typeof step.react.key === "string" && step.react.key);
        if (!ok) problems.push(`not a step: ${JSON.stringify(step)} (want {send: "text"} or {react: {event_id, key}})`);
    }
    if (!opts.room_id && opts.steps[0]?.react) {
        // In a fresh DM there is nothing to react to before something was said.
        problems.push("in a new DM the first step must be a message");
    }
    if (problems.length) throw new UsageError(problems.join("; "));
    return opts;
}

// ---------------------------------------------------------------------------------------
// Result and exit: whatever happens, one JSON object on stdout and a bounded exit.
// ---------------------------------------------------------------------------------------
const result = {
    ok: false,
    mode: null,
    user_id: null,
    device_id: null,
    bot: null,
    room_id: null,
    room_created: false,
    room_encrypted: null,
    bot_has_device_keys: null,
    own_cross_signing_ready: null,
    bot_device_cross_signed: null,
    bot_devices: [],
    replies: [],
    reactions: [],
    shields: [],
    warnings: [],
    errors: [],
    timed_out: false,
    timings_ms: {},
};
let client = null;
let finishing = false;

function mark(name) {
    result.timings_ms[name] = since();
}

async function finish(code) {
    if (finishing) return;
    finishing = true;
    result.timings_ms.total = since();
    // Stopping the client ends the sync loop; process.exit below ends anything else
    // (crypto outgoing-request loop, pending fetches, wasm) regardless.
    setTimeout(() => process.exit(code), 3000).unref();
    try {
        client?.stopClient();
    } catch (e) {
        note(`stopClient failed: ${e}`);
    }
    process.stdout.write(JSON.stringify(result) + "\n", () => process.exit(code));
}

function fail(message) {
    result.errors.push(message);
    note(`error: ${message}`);
}

process.on("unhandledRejection", (reason) => {
    // matrix-js-sdk occasionally rejects in background tasks (e.g. a sync torn down by
    // stopClient). Record it; only the main flow decides the exit code.
    note(`unhandled rejection: ${reason instanceof Error ? reason.stack : reason}`);
});
process.on("uncaughtException", (err) => {
    fail(`uncaught exception: ${err?.stack || err}`);
    finish(1);
});
for (const sig of ["SIGTERM", "SIGINT"]) {
    process.on(sig, () => {
        fail(`stopped by ${sig}`);
        finish(1);
    });
}

// ---------------------------------------------------------------------------------------
// Small async helpers
// ---------------------------------------------------------------------------------------
class Deadline extends Error {}
let changeWaiters = [];
/** Wake up everything waiting in waitUntil (called on every relevant client event). */
function changed() {
    const waiters = changeWaiters;
    changeWaiters = [];
    for (const w of waiters) w();
}
/** Re-run `check` on every client change (and every 250 ms) until it returns a truthy
 * value or `deadline` (performance.now() ms) passes; then return null. */
async function waitUntil(check, deadline) {
    for (;;) {
        const value = await check();
        if (value) return value;
        const left = deadline - performance.now();
        if (left <= 0) return null;
        await new Promise((resolve) => {
            const timer = setTimeout(resolve, Math.min(left, 250));
            changeWaiters.push(() => {
                clearTimeout(timer);
                resolve();
            });
        });
    }
}

// ---------------------------------------------------------------------------------------
// Main flow
// ---------------------------------------------------------------------------------------
async function main() {
    let opts;
    try {
        opts = await parseOptions(process.argv.slice(2));
    } catch (e) {
        if (e instanceof UsageError) {
            fail(`bad arguments: ${e.message}`);
            process.stderr.write(USAGE + "\n");
            return finish(3);
        }
        throw e;
    }
    const hardDeadline = T0 + opts.timeout * 1000;
    setTimeout(() => {
        result.timed_out = true;
        fail(`timed out after ${opts.timeout} s`);
        finish(2);
    }, Math.max(0, hardDeadline - performance.now()));

    result.mode = opts.mode;
    result.bot = opts.bot;

    if (opts.store === "indexeddb") await import("fake-indexeddb/auto");
    const sdk = await import("matrix-js-sdk");
    const cryptoApi = await import("matrix-js-sdk/lib/crypto-api/index.js");
    const { logger } = await import("matrix-js-sdk/lib/logger.js");
    logger.setLevel?.(VERBOSE ? "debug" : "warn");
    mark("sdk_imported");

    // -- log in -------------------------------------------------------------------------
    const homeserver = opts.homeserver.replace(/\/+$/, "");
    let userId = opts.user_id;
    let accessToken = opts.access_token;
    let deviceId = opts.device_id;
    if (!accessToken) {
        const anon = sdk.createClient({ baseUrl: homeserver });
        const localpart = userId.startsWith("@") ? userId.slice(1).split(":")[0] : userId;
        const login = await anon.loginRequest({
            type: "m.login.password",
            identifier: { type: "m.id.user", user: localpart },
            password: opts.password,
            initial_device_display_name: opts.device_name,
        });
        userId = login.user_id;
        accessToken = login.access_token;
        deviceId = login.device_id;
    } else {
        // Whose token is it, and which device? (Synapse's whoami returns the device id.)
        const who = await sdk.createClient({ baseUrl: homeserver, accessToken }).whoami();
        if (userId && userId.startsWith("@") && userId !== who.user_id) {
            throw new Error(`the access token belongs to ${who.user_id}, not ${userId}`);
        }
        userId = who.user_id;
        deviceId ??= who.device_id;
        if (!deviceId) throw new Error("whoami returned no device_id: give device_id");
    }
    result.user_id = userId;
    result.device_id = deviceId;
    mark("logged_in");
    note(`logged in as ${userId} device ${deviceId}`);

    client = sdk.createClient({
        baseUrl: homeserver,
        userId,
        deviceId,
        accessToken,
        timelineSupport: false,
    });

    // -- crypto ---------------------------------------------------------------------------
    await client.initRustCrypto({ useIndexedDB: opts.store === "indexeddb", cryptoDatabasePrefix: `jsclient-${deviceId}` });
    const crypto = client.getCrypto();
    mark("crypto_ready");
    crypto.setDeviceIsolationMode(
        opts.mode === "signed"
            ? new cryptoApi.OnlySignedDevicesIsolationMode()
            : new cryptoApi.AllDevicesIsolationMode(false),
    );

    if (opts.cross_signing) {
        // Before the first sync, as Element does at login: make this device's own
        // master/self-signing/user-signing keys and sign the device with them.
        await crypto.bootstrapCrossSigning({
            authUploadDeviceSigningKeys: async (makeRequest) => {
                try {
                    return await makeRequest(null);
                } catch (e) {
                    const session = e?.data?.session;
                    if (e?.httpStatus !== 401 || !session) throw e;
                    if (!opts.password) {
                        throw new Error("uploading cross-signing keys needs the password (user-interactive auth)");
                    }
                    return await makeRequest({
                        type: "m.login.password",
                        identifier: { type: "m.id.user", user: userId },
                        password: opts.password,
                        session,
                    });
                }
            },
        });
        // Not isCrossSigningReady() here: before the first sync it waits for a pending
        // /keys/query of our own user (1 s timeout, twice). It is checked at the end.
        mark("cross_signing_bootstrapped");
    }

    // -- event plumbing ---------------------------------------------------------------------
    /** Every message-like event from the bot (in any room), in arrival order. */
    const botEvents = [];
    const onTimeline = (event, room, toStart, removed, data) => {
        if (toStart || removed || data?.liveEvent === false) return;
        if (event.getSender() === opts.bot) {
            botEvents.push({ event, arrived: performance.now() });
        }
        changed();
    };
    client.on(sdk.RoomEvent.Timeline, onTimeline);
    client.on(sdk.MatrixEventEvent.Decrypted, changed);
    client.on(sdk.RoomStateEvent.Members, changed);
    client.on(sdk.RoomEvent.MyMembership, changed);
    client.on(sdk.ClientEvent.Room, changed);
    client.on(sdk.ClientEvent.Sync, changed);

    // -- first sync ---------------------------------------------------------------------------
    let syncState = null;
    client.on(sdk.ClientEvent.Sync, (state) => {
        syncState = state;
    });
    await client.startClient({ initialSyncLimit: 20, lazyLoadMembers: true });
    const prepared = await waitUntil(() => syncState === "PREPARED" || syncState === "SYNCING", hardDeadline);
    if (!prepared) return; // the timeout handler finishes
    mark("first_sync");

    // -- the room -------------------------------------------------------------------------------
    let roomId = opts.room_id;
    if (!roomId) {
        const devices = await crypto.getUserDeviceInfo([opts.bot], true);
        const botDeviceCount = devices.get(opts.bot)?.size ?? 0;
        result.bot_has_device_keys = botDeviceCount > 0;
        const encrypt = opts.encrypt === "always" || result.bot_has_device_keys;
        if (!encrypt) result.warnings.push("the bot has no device keys: created an unencrypted DM, as Element Web does");
        const created = await client.createRoom({
            is_direct: true,
            preset: sdk.Preset.TrustedPrivateChat,
            visibility: sdk.Visibility.Private,
            invite: [opts.bot],
            initial_state: encrypt
                ? [{ type: "m.room.encryption", state_key: "", content: { algorithm: "m.megolm.v1.aes-sha2" } }]
                : [],
        });
        roomId = created.room_id;
        result.room_created = true;
        // Mark it as a DM in m.direct, as Element does.
        const direct = { ...(client.getAccountData(sdk.EventType.Direct)?.getContent() ?? {}) };
        direct[opts.bot] = [...new Set([...(direct[opts.bot] ?? []), roomId])];
        await client.setAccountData(sdk.EventType.Direct, direct);
        note(`created DM ${roomId} (encrypted: ${encrypt})`);
    } else {
        await client.joinRoom(roomId);
        note(`joined ${roomId}`);
    }
    result.room_id = roomId;

    // The room must be in the client's store with its m.room.encryption state processed by
    // the crypto layer before we send: for an unknown room matrix-js-sdk sends in the clear.
    const roomReady = await waitUntil(async () => {
        const room = client.getRoom(roomId);
        if (!room || room.getMyMembership() !== "join") return false;
        const hasEncryptionState = !!room.currentState.getStateEvents("m.room.encryption", "");
        if (!hasEncryptionState) return !result.room_created || opts.encrypt === "auto" ? "plain" : false;
        return (await crypto.isEncryptionEnabledInRoom(roomId)) ? "encrypted" : false;
    }, hardDeadline);
    if (!roomReady) return;
    result.room_encrypted = roomReady === "encrypted";
    if (!result.room_encrypted) result.warnings.push("the room is not encrypted");
    mark("room_ready");

    const botJoined = await waitUntil(
        () => client.getRoom(roomId)?.getMember(opts.bot)?.membership === "join",
        hardDeadline,
    );
    if (!botJoined) return;
    mark("bot_joined");
    note(`${opts.bot} is in the room`);

    // -- messages -----------------------------------------------------------------------------
    const used = new Set();
    const isMessage = (ev) => {
        if (ev.getRoomId() !== roomId || used.has(ev.getId())) return false;
        const type = ev.getType();
        if (type !== "m.room.message" && type !== "m.room.encrypted") return false;
        const rel = ev.getContent()?.["m.relates_to"] ?? ev.getWireContent()?.["m.relates_to"];
        return rel?.rel_type !== "m.replace"; // edits are not replies
    };
    const replyTo = (ev) =>
        ev.getContent()?.["m.relates_to"]?.["m.in_reply_to"]?.event_id ?? ev.replyEventId ?? null;
    const settled = (ev) => !ev.isBeingDecrypted() && !ev.shouldAttemptDecryption();

    async function describeReply(entry, sentAt) {
        const ev = entry.event;
        used.add(ev.getId());
        const decrypted = ev.isEncrypted() && !ev.isDecryptionFailure() && ev.getType() !== "m.room.encrypted";
        const info = {
            reply_event_id: ev.getId(),
            reply_body: decrypted || !ev.isEncrypted() ? (ev.getContent()?.body ?? null) : null,
            decrypted,
            was_encrypted: ev.isEncrypted(),
            decryption_failure: ev.isDecryptionFailure() ? String(ev.decryptionFailureReason) : null,
            ms: Math.round(performance.now() - sentAt),
            sender_device: ev.getWireContent()?.device_id ?? null,
            shield: null,
        };
        if (ev.isEncrypted() && decrypted) {
            const enc = await crypto.getEncryptionInfoForEvent(ev);
            if (enc) {
                info.shield = {
                    colour: cryptoApi.EventShieldColour[enc.shieldColour],
                    reason: enc.shieldReason === null ? null : cryptoApi.EventShieldReason[enc.shieldReason],
                };
                if (enc.shieldColour !== cryptoApi.EventShieldColour.NONE) {
                    result.shields.push({ event_id: ev.getId(), ...info.shield });
                }
            }
        }
        return info;
    }

    /** Wait for the bot's answer to `sentId`: a reply to it (m.in_reply_to) within the reply
     * timeout, else the first other new bot message. Gives a UTD a chance to decrypt. */
    async function awaitBotAnswer(sentId, sentAt, startIndex) {
        const replyDeadline = Math.min(hardDeadline, sentAt + opts.reply_timeout * 1000);
        const fresh = () => botEvents.slice(startIndex).filter((e) => isMessage(e.event));
        const matched = await waitUntil(() => {
            const hit = fresh().find((e) => replyTo(e.event) === sentId);
            if (!hit) return null;
            // Wait for decryption to settle (success, or failure after keys did not come).
            if (!settled(hit.event)) return null;
            if (hit.event.isDecryptionFailure() && performance.now() < replyDeadline - 100) {
                // Keys may still arrive (to-device lag): the SDK retries and emits Decrypted.
                return performance.now() - hit.arrived > 3000 ? hit : null;
            }
            return hit;
        }, replyDeadline);
        if (matched) return { ...(await describeReply(matched, sentAt)), matched: "in_reply_to" };
        const any = fresh()[0];
        if (any) return { ...(await describeReply(any, sentAt)), matched: "any" };
        return null;
    }

    async function sendAndAwait(body) {
        const entry = { body, sent_event_id: null, sent_encrypted: null, send_ms: null };
        result.replies.push(entry);
        const startIndex = botEvents.length;
        const sentAt = performance.now();
        const res = await client.sendMessage(roomId, { msgtype: "m.text", body });
        entry.sent_event_id = res.event_id;
        entry.send_ms = Math.round(performance.now() - sentAt);
        const local = client.getRoom(roomId)?.findEventById(res.event_id);
        entry.sent_encrypted = local ? local.isEncrypted() : null;
        note(`sent ${res.event_id} (${entry.send_ms} ms, encrypted: ${entry.sent_encrypted})`);
        const answer = await awaitBotAnswer(res.event_id, sentAt, startIndex);
        if (!answer) {
            Object.assign(entry, { reply_body: null, decrypted: false, ms: null, matched: null });
            fail(`no reply from ${opts.bot} to ${res.event_id} within ${opts.reply_timeout} s`);
            return false; // the bot is not answering: later steps would only wait as long
        }
        Object.assign(entry, answer);
        note(`reply ${answer.reply_event_id} after ${answer.ms} ms (decrypted: ${answer.decrypted}, ${answer.matched})`);
        if (answer.matched === "any") result.warnings.push(`the bot's answer to ${res.event_id} is not a reply (no m.in_reply_to)`);
        if (!answer.decrypted) fail(`the bot's answer to ${res.event_id} could not be decrypted (${answer.decryption_failure ?? "not encrypted"})`);
        if (result.replies.length === 1) mark("first_round_trip");
        return true;
    }

    async function react(reaction) {
        const out = { target: reaction.event_id, key: reaction.key, event_id: null, reply: null };
        result.reactions.push(out);
        let target = reaction.event_id;
        if (target === "latest") {
            const events = client.getRoom(roomId)?.getLiveTimeline().getEvents() ?? [];
            const latest = [...events].reverse().find(
                (ev) =>
                    ev.getSender() === opts.bot &&
                    (ev.getType() === "m.room.message" || ev.getType() === "m.room.encrypted") &&
                    (!reaction.match || String(ev.getContent()?.body ?? "").includes(reaction.match)),
            );
            if (!latest) {
                fail(`no message from the bot in the room to react to${reaction.match ? ` containing ${JSON.stringify(reaction.match)}` : ""}`);
                return false;
            }
            target = latest.getId();
        }
        out.target = target;
        const startIndex = botEvents.length;
        const sentAt = performance.now();
        // Like Element: matrix-js-sdk sends m.reaction unencrypted even in an encrypted room.
        const res = await client.sendEvent(roomId, sdk.EventType.Reaction, {
            "m.relates_to": { rel_type: sdk.RelationType.Annotation, event_id: target, key: reaction.key },
        });
        out.event_id = res.event_id;
        note(`reacted ${reaction.key} to ${target}: ${res.event_id}`);
        if (reaction.await_reply) {
            const answer = await awaitBotAnswer(res.event_id, sentAt, startIndex);
            out.reply = answer;
            if (!answer) {
                fail(`no message from ${opts.bot} after the reaction ${res.event_id}`);
                return false;
            }
            if (!answer.decrypted) fail(`the bot's answer to the reaction ${res.event_id} could not be decrypted`);
        }
        return true;
    }

    for (const step of opts.steps) {
        const go = step.send !== undefined ? await sendAndAwait(step.send) : await react(step.react);
        if (!go) break;
    }
    mark("steps_done");

    if (opts.cross_signing) {
        result.own_cross_signing_ready = await crypto.isCrossSigningReady();
        if (!result.own_cross_signing_ready) result.warnings.push("this client's own cross-signing is not ready");
    }

    // -- the bot's devices as this client sees them -------------------------------------------
    const deviceMap = await crypto.getUserDeviceInfo([opts.bot], true);
    const botDevices = deviceMap.get(opts.bot) ?? new Map();
    result.bot_has_device_keys = botDevices.size > 0;
    for (const [id] of botDevices) {
        const status = await crypto.getDeviceVerificationStatus(opts.bot, id);
        result.bot_devices.push({
            device_id: id,
            signed_by_owner: !!status?.signedByOwner,
            cross_signing_verified: !!status?.crossSigningVerified,
            locally_verified: !!status?.localVerified,
        });
    }
    const replyDevices = new Set(result.replies.map((r) => r.sender_device).filter(Boolean));
    const relevant = result.bot_devices.filter((d) => replyDevices.size === 0 || replyDevices.has(d.device_id));
    result.bot_device_cross_signed = relevant.length > 0 && relevant.every((d) => d.signed_by_owner);
    if (result.bot_devices.some((d) => !d.signed_by_owner)) {
        result.warnings.push(
            opts.mode === "signed"
                ? "a bot device is not cross-signed by its owner: it gets no room keys in 'signed' mode"
                : "a bot device is not cross-signed by its owner (Element shows a red shield on its messages)",
        );
    }

    const sends = opts.steps.filter((step) => step.send !== undefined).length;
    const everyReply = result.replies.length === sends && result.replies.every((r) => r.decrypted);
    result.ok = everyReply && result.errors.length === 0;
    return finish(result.ok ? 0 : 1);
}

main().catch((e) => {
    note(e?.stack || String(e));
    const code = e?.errcode ? ` (${e.errcode}, HTTP ${e.httpStatus})` : "";
    fail(`${e?.name ?? "Error"}: ${e?.message ?? e}${code}`);
    finish(1);
});
