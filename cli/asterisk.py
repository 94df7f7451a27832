"""`ivrs asterisk test-call`: a smoke-test call on a real Asterisk, placed over AMI with the
synchronous `asterisk-ami` client. It originates `Local/<hotline>@ivrs-test/n`: that half runs
the hotline's dialplan (recording, AGI to `ivrs agi`), and the other half, in
`[ivrs-test-caller]`, keys the DTMF script with SendDTMF (dialplan/extensions.conf). It prints
when the IVR answered and how each half hung up, then where the recording is.

    IVRS_AMI_SECRET=... ivrs asterisk test-call --keys "3W12345678#W246810#W{totp}#WW9" \\
        --totp-seed BASE32SEED

Keys: SendDTMF's digits, `*`, `#`, with `w` (0.5 s) and `W` (1 s) pauses; a space is a `W`;
`{totp}` becomes the token's current code. The keys are never printed (they hold a password).
"""

from __future__ import annotations

import argparse
import contextlib
import os
import queue
import re
import sys
import time
from typing import Any

from asterisk.ami import Action, AMIClient

TEST_IVR_CONTEXT, TEST_CALLER_CONTEXT = "ivrs-test", "ivrs-test-caller"
CALLERS = ("keys", "silence", "hangup")  # [ivrs-test-caller]'s extensions
DTMF_SCRIPT = re.compile(r"[0-9*#wW]*")
RECORDINGS = "/var/spool/asterisk/monitor"  # extensions.conf's IVRS_RECORDINGS
SOCKET_TIMEOUT_S, KEEPALIVE_S = 5.0, 2.0


def add_asterisk_commands(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="asterisk_command", required=True)
    p = sub.add_parser(
        "test-call",
        help="originate a Local-channel test call into the IVR over AMI (secret: IVRS_AMI_SECRET)",
    )
    p.add_argument("--keys", help="DTMF for the caller half: digits * #, w/W pauses, {totp}")
    p.add_argument("--caller", choices=CALLERS, help="[ivrs-test-caller] extension (default: "
                   "keys with --keys, else silence)")  # fmt: skip
    p.add_argument("--hotline", default="39023333", help="the DID the call reaches")
    p.add_argument("--caller-id", default="", help='e.g. "Chan Tai Man" <85291234567>')
    p.add_argument("--totp-seed", help="base32 seed: {totp} in --keys types its current code")
    p.add_argument("--totp-digits", type=int, default=6)
    p.add_argument("--totp-period", type=int, default=60)
    p.add_argument("--host", help="AMI host (IVRS_AMI_HOST, else 127.0.0.1)")
    p.add_argument("--port", type=int, help="AMI port (IVRS_AMI_PORT, else 5038)")
    p.add_argument("--username", help="AMI user (IVRS_AMI_USERNAME, else ivrs)")
    p.add_argument("--timeout", type=float, default=600.0, help="seconds to wait for the end")
    p.add_argument("--no-wait", action="store_true", help="return once the IVR has answered")
    p.add_argument("--recordings", default=RECORDINGS, help="Asterisk's IVRS_RECORDINGS")
    p.set_defaults(func=run_test_call)


def dtmf_keys(script: str, code: str | None) -> str:
    """The script as SendDTMF takes it; ValueError names what is wrong."""
    if "{totp}" in script:
        if code is None:
            raise ValueError("--keys uses {totp}: give --totp-seed")
        script = script.replace("{totp}", code)
    keys = re.sub(r"\s+", "W", script.strip())
    if not DTMF_SCRIPT.fullmatch(keys):
        bad = next(c for c in keys if not DTMF_SCRIPT.fullmatch(c))
        raise ValueError(f"--keys: {bad!r} is not a key (0-9 * #) or a pause (w W, space)")
    return keys


def run_test_call(args: argparse.Namespace) -> int:
    env = os.environ
    host = args.host or env.get("IVRS_AMI_HOST") or "127.0.0.1"
    port = args.port or int(env.get("IVRS_AMI_PORT") or 5038)
    username = args.username or env.get("IVRS_AMI_USERNAME") or "ivrs"
    secret = env.get("IVRS_AMI_SECRET", "")  # never an argument: it would show in `ps`
    code = None
    if args.totp_seed:
        import pyotp

        code = pyotp.TOTP(args.totp_seed, digits=args.totp_digits, interval=args.totp_period).now()
    try:
        keys = dtmf_keys(args.keys or "", code)
    except ValueError as e:
        print(f"ivrs asterisk test-call: {e}", file=sys.stderr)
        return 2
    caller = args.caller or ("keys" if keys else "silence")

    events: queue.Queue[Any] = queue.Queue()
    client = AMIClient(address=host, port=port, timeout=SOCKET_TIMEOUT_S)
    client.add_event_listener(on_event=lambda event, **_: events.put(event))
    try:
        login = client.login(username=username, secret=secret).response
    except OSError as e:
        print(f"No AMI at {host}:{port} ({e.strerror or e}).", file=sys.stderr)
        return 1
    try:
        if login is None or login.is_error():
            why = login.keys.get("Message") if login is not None else "no answer"
            print(f"AMI login as {username!r} refused: {why}.", file=sys.stderr)
            return 1
        return _place(client, events, args, keys, caller)
    finally:
        # Asterisk hangs up after a refused login: its socket may be gone before the client's
        # listener thread has marked it finished.
        with contextlib.suppress(OSError):
            if not client.finished.is_set():
                client.logoff()
        client.disconnect()


def _place(
    client: AMIClient, events: queue.Queue[Any], args: argparse.Namespace, keys: str, caller: str
) -> int:
    channel = f"Local/{args.hotline}@{TEST_IVR_CONTEXT}/n"
    fields = {
        "Channel": channel,
        "Context": TEST_CALLER_CONTEXT,
        "Exten": caller,
        "Priority": "1",
        "Async": "true",
        "ActionID": f"ivrs-test-call-{os.getpid()}-{int(time.time())}",
    }
    if args.caller_id:
        fields["CallerID"] = args.caller_id
    action = Action("Originate", keys=fields, variables={"IVRS_TEST_KEYS": keys} if keys else {})
    print(f"-- originating {channel} -> {caller}@{TEST_CALLER_CONTEXT} ({len(keys)} DTMF chars)")
    reply = client.send_action(action).response
    if reply is None or reply.is_error():
        why = reply.keys.get("Message") if reply is not None else "no answer"
        print(f"Originate refused: {why}.", file=sys.stderr)
        return 1
    deadline = time.monotonic() + args.timeout
    answer = _next(client, events, deadline, lambda e: e.name == "OriginateResponse"
                   and e.keys.get("ActionID") == fields["ActionID"])  # fmt: skip
    if answer is None:
        print("-- no OriginateResponse in time", file=sys.stderr)
        return 1
    if answer.keys.get("Response") != "Success":
        print(f"-- failed: reason {answer.keys.get('Reason')} (0: no such extension or context)")
        return 1
    linkedid = answer.keys.get("Uniqueid", "")
    print(f"-- answered: {answer.keys.get('Channel')} (uniqueid {linkedid})")
    if args.no_wait:
        return 0
    ivr_half = None
    while True:
        hangup = _next(client, events, deadline, lambda e: e.name == "Hangup"
                       and e.keys.get("Linkedid") == linkedid)  # fmt: skip
        if hangup is None:
            print("-- still running at --timeout", file=sys.stderr)
            return 1
        name, uid = hangup.keys.get("Channel", ""), hangup.keys.get("Uniqueid", "")
        cause = f"{hangup.keys.get('Cause')} ({hangup.keys.get('Cause-txt')})"
        print(f"-- hung up: {name} (uniqueid {uid}), cause {cause}")
        if name.endswith(";2"):
            ivr_half = uid
        if name == answer.keys.get("Channel"):
            break
    if ivr_half:
        print(f"-- recording of the IVR half: {args.recordings}/{ivr_half}.wav")
    return 0


def _next(client: AMIClient, events: queue.Queue[Any], deadline: float, wanted: Any) -> Any:
    """The next event `wanted` accepts, or None at the deadline. asterisk-ami's reader gives
    up after its socket timeout without data: a Ping every KEEPALIVE_S keeps data coming."""
    while (left := deadline - time.monotonic()) > 0:
        try:
            event = events.get(timeout=min(left, KEEPALIVE_S))
        except queue.Empty:
            client.send_action(Action("Ping"))
            continue
        if wanted(event):
            return event
    return None
