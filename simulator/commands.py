"""The AGI commands: what each answers (the line is split and matched in command_line.py).

Argument checks follow res_agi.c (argv counts include the command words), so wrong usage is
refused where Asterisk refuses it (with ShowUsage: the caller of `run` answers 520).
"""

from __future__ import annotations

import contextlib
import dataclasses
from datetime import datetime
from zoneinfo import ZoneInfo

from prompts import say

from .channel import KEY_MS, Channel, Sound
from .command_line import ShowUsage, atoi, scan_int
from .keys import KEYS
from .sounds import SAMPLES_PER_MS, SAY_MS, TIMEZONE, datetime_text, number_words

FIRST_DIGIT_MS, NEXT_DIGIT_MS = 10_000, 5_000  # GET DATA with timeout 0: the dialplan defaults
DEFAULT_DATETIME_FORMAT = "ABdY 'digits/at' IMp"

# Dialplan applications EXEC knows: those with an effect here, and those that just answer 0.
APPS_MODELLED = {"answer", "hangup", "mixmonitor", "playback", "set", "stopmixmonitor", "wait"}
APPS_OTHER = {
    "background", "busy", "congestion", "dial", "echo", "execif", "gosub", "goto", "gotoif",
    "log", "noop", "progress", "return", "ringing", "saydigits", "saynumber", "system",
    "transfer", "userevent", "verbose",
}  # fmt: skip


class Commands:
    """Answers each command on `channel` with the lines Asterisk sends for it."""

    def __init__(self, channel: Channel):
        self.channel = channel
        self._database: dict[tuple[str, str], str] = {}

    async def run(self, words: tuple[str, ...], argv: list[str]) -> list[str]:
        reply: list[str] = await getattr(self, "_" + "_".join(words))(argv)
        return reply

    async def _answer(self, argv: list[str]) -> list[str]:
        await self.channel.answer()
        return ["200 result=0"]

    async def _channel_status(self, argv: list[str]) -> list[str]:
        state = "6" if self.channel.answered else "4"  # 01: ringing before ANSWER, up after
        if len(argv) == 2:
            return [f"200 result={state}"]
        if len(argv) == 3:
            return [f"200 result={state if argv[2] == self.channel.name else -1}"]
        raise ShowUsage

    async def _hangup(self, argv: list[str]) -> list[str]:
        if len(argv) > 2:
            raise ShowUsage
        if len(argv) == 2 and argv[1] != self.channel.name:
            return ["200 result=-1"]
        self.channel.hang_up(by_caller=False)  # 07 agi_hangup: then the HANGUP line and 511s
        return ["200 result=1"]

    async def _noop(self, argv: list[str]) -> list[str]:
        return ["200 result=0"]

    async def _verbose(self, argv: list[str]) -> list[str]:
        if len(argv) < 2:
            raise ShowUsage
        return ["200 result=1"]

    # -- variables and the database -------------------------------------------------------

    async def _set_variable(self, argv: list[str]) -> list[str]:
        if len(argv) != 4:
            raise ShowUsage
        self.channel.set(argv[2], argv[3])
        return ["200 result=1"]

    async def _get_variable(self, argv: list[str]) -> list[str]:
        if len(argv) != 3:
            raise ShowUsage
        value = self.channel.value(argv[2])
        return ["200 result=0"] if value is None else [f"200 result=1 ({value})"]

    async def _get_full_variable(self, argv: list[str]) -> list[str]:
        if len(argv) not in (4, 5):
            raise ShowUsage
        if len(argv) == 5 and argv[4] != self.channel.name:
            return ["200 result=0"]
        return [f"200 result=1 ({self.channel.expand(argv[3])})"]  # unset: "()" (05)

    async def _database_get(self, argv: list[str]) -> list[str]:
        if len(argv) != 4:
            raise ShowUsage
        value = self._database.get((argv[2], argv[3]))
        return ["200 result=0"] if value is None else [f"200 result=1 ({value})"]

    async def _database_put(self, argv: list[str]) -> list[str]:
        if len(argv) != 5:
            raise ShowUsage
        self._database[argv[2], argv[3]] = argv[4]
        return ["200 result=1"]

    async def _database_del(self, argv: list[str]) -> list[str]:
        if len(argv) != 4:
            raise ShowUsage
        found = self._database.pop((argv[2], argv[3]), None) is not None
        return [f"200 result={int(found)}"]

    async def _database_deltree(self, argv: list[str]) -> list[str]:
        if not 3 <= len(argv) <= 4:
            raise ShowUsage
        tree = argv[3] if len(argv) == 4 else None
        doomed = [
            (family, key)
            for family, key in self._database
            if family == argv[2] and (tree is None or key == tree or key.startswith(tree + "/"))
        ]
        for entry in doomed:
            del self._database[entry]
        return [f"200 result={0 if doomed else 1}"]  # inverted, exactly as res_agi.c writes it

    # -- playing and reading --------------------------------------------------------------

    async def _stream_file(self, argv: list[str]) -> list[str]:
        if not 4 <= len(argv) <= 5:
            raise ShowUsage
        offset = scan_int(argv[4]) if len(argv) == 5 else 0
        if offset is None:
            raise ShowUsage
        channel = self.channel
        if not channel.exists(argv[2]):
            channel.failed = True  # 08: AGI() will end with AGISTATUS=FAILURE
            return [f"200 result=-1 endpos={offset}"]
        total = channel.sounds.samples(argv[2], channel.record.language)
        start = min(max(offset, 0), total)  # the fourth argument is a sample offset (02)
        sound = channel.prompt(argv[2], (total - start) // SAMPLES_PER_MS)
        sound = dataclasses.replace(sound, offset_ms=start // SAMPLES_PER_MS)
        played = await channel.play(sound, argv[3])
        channel.hear_keys(played.pressed or "")
        if played.hung_up or played.interrupted:
            result = -1 if played.hung_up else ord(played.pressed or "\0")
            endpos = start + played.ms * SAMPLES_PER_MS
        else:
            result, endpos = 0, total
        channel.set("PLAYBACKSTATUS", "FAILED" if result else "SUCCESS")  # as res_agi.c does
        return [f"200 result={result} endpos={endpos}"]

    async def _get_data(self, argv: list[str]) -> list[str]:
        if len(argv) < 3:
            raise ShowUsage
        timeout = atoi(argv[3]) if len(argv) > 3 else 0
        max_digits = atoi(argv[4]) if len(argv) > 4 else 1024
        channel, keypad = self.channel, self.channel.keypad
        if not channel.exists(argv[2]):
            return ["200 result=-1"]  # 03 gdtimeout: the hang-up's answer, yet the call is up
        if keypad.typing and argv[2].startswith("silence/"):
            # A caller in the middle of an entry keeps typing: the next key stops the silence
            # as soon as it starts, so no pause is heard between the keys of one entry.
            first = ""
        else:
            played = await channel.play(channel.prompt(argv[2]), KEYS)  # reads during its prompt
            if played.hung_up:
                return ["200 result=-1"]
            first = played.pressed or ""  # the key that stopped the prompt starts the entry
        typed = first + (keypad.typing if first else await keypad.begin_reading())
        digits, used, ended = "", 0, True  # ended by `#` or by reaching max_digits
        for key in typed:
            used += 1
            if key == "#":
                break
            digits += key
            if len(digits) >= max_digits:
                break
        else:
            ended = False
        keypad.read(used - len(first))
        channel.hear_keys(typed[:used], KEY_MS * (used - len(first)))
        await channel.advance(KEY_MS * (used - len(first)), None)
        if ended:
            return [f"200 result={digits}"]
        if keypad.take_hangup() or timeout < 0:  # `!`, or endless silence: the caller leaves
            channel.hang_up(by_caller=True)
            return ["200 result=-1"]
        await channel.advance(timeout or (NEXT_DIGIT_MS if digits else FIRST_DIGIT_MS), "timeout")
        return [f"200 result={digits} (timeout)"]

    async def _wait_for_digit(self, argv: list[str]) -> list[str]:
        if len(argv) != 4:
            raise ShowUsage
        timeout = scan_int(argv[3])
        if timeout is None:
            raise ShowUsage
        channel, keypad = self.channel, self.channel.keypad
        if not channel.take_hangup_due():
            keys = await keypad.begin_reading()
            if keys:
                keypad.read(1)
                channel.hear_keys(keys[0], KEY_MS)
                await channel.advance(KEY_MS, None)
                return [f"200 result={ord(keys[0])}"]  # the key's ASCII code (03: 55 is 7)
            if not (keypad.take_hangup() or timeout < 0):
                await channel.advance(timeout, "timeout")
                return ["200 result=0"]
        channel.hang_up(by_caller=True)
        return ["200 result=-1"]

    async def _say(self, sound: Sound, escape: str) -> list[str]:
        played = await self.channel.play(sound, escape)
        self.channel.hear_keys(played.pressed or "")
        if played.hung_up:
            return ["200 result=-1"]
        return [f"200 result={ord(played.pressed or '0') if played.interrupted else 0}"]

    def _say_sound(self, kind: str, value: str, text: str, files: list[str], ms: int) -> Sound:
        """What a SAY command plays: its fragment files in the channel language (prompts/say.py),
        lasting as long as the built fragments when their lengths are known, else `ms`."""
        built = self.channel.sounds.fragments_ms(files, self.channel.record.language)
        return Sound(kind, value, text, ms if built is None else built, tuple(files))

    async def _say_digits(self, argv: list[str]) -> list[str]:
        if len(argv) != 4 or scan_int(argv[2]) is None:
            raise ShowUsage
        digits = argv[2]
        ms = SAY_MS["digits"] * len(digits)
        sound = self._say_sound("digits", digits, " ".join(digits), say.say_digits(digits), ms)
        return await self._say(sound, argv[3])

    async def _say_number(self, argv: list[str]) -> list[str]:
        number = scan_int(argv[2]) if 4 <= len(argv) <= 5 else None
        if number is None:
            raise ShowUsage
        ms = SAY_MS["number"] * number_words(number)
        files = say.say_number(abs(number), self.channel.record.language)
        files = ["digits/minus", *files] if number < 0 else files
        sound = self._say_sound("number", str(number), str(number), files, ms)
        return await self._say(sound, argv[3])

    async def _say_alpha(self, argv: list[str]) -> list[str]:
        if not 4 <= len(argv) <= 5 or (len(argv) == 5 and argv[4][:1] not in "aAlLnNuU"):
            raise ShowUsage
        letters = argv[2]
        ms = SAY_MS["alpha"] * len(letters)
        text = " ".join(letters.upper())
        sound = self._say_sound("alpha", letters, text, say.say_alpha(letters), ms)
        return await self._say(sound, argv[3])

    def _say_when(self, epoch: int, fmt: str, zone: str | None) -> Sound:
        """SAY TIME / DATETIME. The fragments are those of the IVR's hour-and-minute formats
        (prompts/say.py), whatever `fmt` asks for: the IVR says no dates."""
        sound = _datetime(epoch, fmt, zone)
        try:
            where = ZoneInfo(zone or TIMEZONE)
        except (ValueError, KeyError):  # an unknown time zone: the machine's, as _datetime
            where = ZoneInfo(TIMEZONE)
        files = say.say_time(datetime.fromtimestamp(epoch, where), self.channel.record.language)
        return self._say_sound(sound.kind, sound.value, sound.text, files, sound.ms)

    async def _say_time(self, argv: list[str]) -> list[str]:
        epoch = scan_int(argv[2]) if len(argv) == 4 else None
        if epoch is None:
            raise ShowUsage
        return await self._say(self._say_when(epoch, "IMp", None), argv[3])

    async def _say_datetime(self, argv: list[str]) -> list[str]:
        epoch = scan_int(argv[2]) if len(argv) >= 4 else None
        if epoch is None:
            raise ShowUsage
        fmt = argv[4] if len(argv) > 4 else DEFAULT_DATETIME_FORMAT
        zone = argv[5] if len(argv) > 5 else None
        return await self._say(self._say_when(epoch, fmt, zone), argv[3])

    # -- EXEC and its applications (each returns the application's result) -----------------

    async def _exec(self, argv: list[str]) -> list[str]:
        if len(argv) < 2:
            raise ShowUsage
        app, data = argv[1].lower(), argv[2] if len(argv) > 2 else ""
        if (self.channel.value("AGIEXECFULL") or "").lower() in ("yes", "true", "1", "on"):
            data = self.channel.expand(data)  # otherwise EXEC passes ${...} as it is (05)
        if app in APPS_MODELLED:
            result = await getattr(self, f"_app_{app}")(data)
        elif app in APPS_OTHER:
            result = 0
        else:
            result = -2  # 05: no such application (or its module is not loaded)
        return [f"200 result={result}"]

    async def _app_answer(self, data: str) -> int:
        if self.channel.alive:
            await self.channel.answer()
        return 0

    async def _app_hangup(self, data: str) -> int:
        if not self.channel.alive:
            return 0  # 07 hupexec: EXEC answers 0 on a dead channel
        self.channel.hang_up(by_caller=False)
        return -1

    async def _app_mixmonitor(self, data: str) -> int:
        file, _, options = data.partition(",")
        if not file:
            return -1  # app_mixmonitor: "MixMonitor requires an argument (filename ...)"
        if self.channel.alive:
            self.channel.start_monitor(file, options.partition(",")[0])
        return 0

    async def _app_stopmixmonitor(self, data: str) -> int:
        self.channel.stop_monitor()
        return 0

    async def _app_set(self, data: str) -> int:
        name, _, value = data.partition("=")
        self.channel.set(name, value)
        return 0

    async def _app_wait(self, data: str) -> int:
        channel = self.channel
        if channel.alive and channel.take_hangup_due():
            channel.hang_up(by_caller=True)
            return -1
        with contextlib.suppress(ValueError):
            await channel.advance(int(float(data or 0) * 1000) if channel.alive else 0)
        return 0

    async def _app_playback(self, data: str) -> int:
        channel, status = self.channel, "SUCCESS"
        for file in data.partition(",")[0].split("&"):
            if not channel.alive or not channel.exists(file):
                status = "FAILED"  # 05: Playback still answers 0; only PLAYBACKSTATUS tells
                continue
            if (await channel.play(channel.prompt(file), None)).hung_up:
                channel.set("PLAYBACKSTATUS", "FAILED")
                return -1
        channel.set("PLAYBACKSTATUS", status)
        return 0


def _datetime(epoch: int, fmt: str, zone: str | None) -> Sound:
    try:
        text = datetime_text(epoch, fmt, zone)
    except (ValueError, KeyError):  # an unknown time zone: the machine's (Hong Kong)
        text = datetime_text(epoch, fmt, None)
    return Sound("datetime", str(epoch), text, SAY_MS["datetime"])
