"""A real Asterisk 22 for the tests: built by `make asterisk` (scripts/build-asterisk.sh), run
unprivileged on loopback from a configuration directory of its own, made from the repository's
dialplan/ files with the test's addresses in place of production's.

What the tests add to the shipped files (and only that):
- extensions.conf: the [globals] addresses (FastAGI, backend, recordings, helpdesk dial string),
  and contexts of stand-ins: the helpdesk and the supervisor's phone as Local channels, a caller
  half that only waits (its keys come over AMI), the classic-AGI variant of [ivrs] exactly as
  docs/deploying-on-asterisk.md says to write it, and a way to a FastAGI server without AMI;
- logger.conf: the shipped channels unchanged (the `full` file is what production writes), plus
  `everything`: every verbose level and the `dtmf` channel, to show what the shipped one keeps
  out;
- manager.conf: the shipped user `ivrs` on a free port of 127.0.0.1, and a `tester` user that
  reads every event (AGIExec, DTMF): the tests drive callers by the prompts they hear;
- modules.conf: the shipped one without the PJSIP requirements (built without a SIP stack).
"""

from __future__ import annotations

import os
import re
import secrets
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
DIALPLAN = REPO / "dialplan"
BUILD_SCRIPT = REPO / "scripts" / "build-asterisk.sh"
NO_SOURCE, NOT_BUILT = 3, 4  # build-asterisk.sh --prefix exit statuses
DEBIAN_SOUNDS = Path("/usr/share/asterisk/sounds/en_US_f_Allison")  # asterisk-core-sounds-en-wav
START_TIMEOUT_S = 60
TESTER = "tester"


def installed_prefix() -> tuple[Path | None, str]:
    """Where `make asterisk` installed Asterisk, or None and the one line that says why not
    (`skip`: no source, the only allowed skip; otherwise a failure)."""
    result = subprocess.run(
        [str(BUILD_SCRIPT), "--prefix"], capture_output=True, text=True, timeout=60
    )
    line = (result.stdout or result.stderr).strip()
    if result.returncode == 0:
        return Path(line), ""
    return None, ("skip: " if result.returncode == NO_SOURCE else "") + line


@dataclass
class Ports:
    ami: int
    agi: int  # `ivrs agi` with AMI
    agi_without_ami: int  # a second `ivrs agi`, muting over AGI
    backend: int


@dataclass
class Asterisk:
    prefix: Path
    root: Path  # everything of this instance: etc/, log/, run/, recordings/, ...
    ports: Ports
    env: dict[str, str]  # Asterisk's environment: IVRS_API_TOKEN and the classic script's
    ami_secret: str = field(default_factory=lambda: secrets.token_hex(12), repr=False)
    tester_secret: str = field(default_factory=lambda: secrets.token_hex(12), repr=False)
    process: subprocess.Popen[bytes] | None = None

    @property
    def etc(self) -> Path:
        return self.root / "etc"

    @property
    def logs(self) -> Path:
        return self.root / "log"

    @property
    def recordings(self) -> Path:
        return self.root / "recordings"

    @property
    def binary(self) -> Path:
        return self.prefix / "sbin" / "asterisk"

    def configure(self, sounds: Path, classic_agi: Path) -> None:
        """Write the configuration directory; `sounds`: the built prompts (<lang>/ivrs/...)."""
        for name in ("etc", "log", "run", "lib", "spool", "data", "recordings", "agi-bin"):
            (self.root / name).mkdir(parents=True, exist_ok=True)
        installed_data = self.prefix / "var" / "lib" / "asterisk"
        _link(installed_data / "documentation", self.root / "data" / "documentation")
        _merge_sounds(self.root / "data" / "sounds" / "en", sounds / "en", DEBIAN_SOUNDS)
        (self.etc / "asterisk.conf").write_text(self._asterisk_conf(), encoding="utf-8")
        (self.etc / "modules.conf").write_text(_test_modules(), encoding="utf-8")
        (self.etc / "logger.conf").write_text(_test_logger(), encoding="utf-8")
        (self.etc / "manager.conf").write_text(self._manager_conf(), encoding="utf-8")
        (self.etc / "manager_ivrs_secret.conf").write_text(
            f"secret = {self.ami_secret}\n", encoding="utf-8"
        )
        (self.etc / "extensions.conf").write_text(
            self._extensions_conf(classic_agi), encoding="utf-8"
        )

    def _asterisk_conf(self) -> str:
        r = self.root
        return f"""[directories]
astetcdir => {self.etc}
astmoddir => {self.prefix}/lib/asterisk/modules
astvarlibdir => {r}/lib
astdbdir => {r}/lib
astkeydir => {r}/lib
astdatadir => {r}/data
astagidir => {r}/agi-bin
astspooldir => {r}/spool
astrundir => {r}/run
astlogdir => {self.logs}
astsbindir => {self.prefix}/sbin
astcachedir => {r}/spool

[options]
; the sounds' language fallback is en; no colours in the logs
nocolor = yes
"""

    def _manager_conf(self) -> str:
        shipped = (DIALPLAN / "manager.conf").read_text(encoding="utf-8")
        conf = re.sub(r"^port = \d+$", f"port = {self.ports.ami}", shipped, flags=re.M)
        conf = re.sub(r"^bindaddr = .*$", "bindaddr = 127.0.0.1", conf, flags=re.M)
        return (
            conf
            + f"""
; tests/asterisk: the driver of the test callers reads every event (AGIExec, DTMF).
[{TESTER}]
secret = {self.tester_secret}
deny = 0.0.0.0/0.0.0.0
permit = 127.0.0.1/255.255.255.255
read = all
write = all
"""
        )

    def _extensions_conf(self, classic_agi: Path) -> str:
        shipped = (DIALPLAN / "extensions.conf").read_text(encoding="utf-8")
        overrides = {
            "IVRS_AGI_PORT": str(self.ports.agi),
            "IVRS_BACKEND_URL": f"http://127.0.0.1:{self.ports.backend}",
            "IVRS_RECORDINGS": str(self.recordings),
            "IVRS_HELPDESK_DIAL": "Local/helpdesk@ivrs-test-standins",
            "IVRS_HELPDESK_RING": "10",
        }
        conf = shipped
        for name, value in overrides.items():
            conf, count = re.subn(rf"^{name}=.*$", f"{name}={value}", conf, flags=re.M)
            assert count == 1, f"extensions.conf has no global {name}"
        return conf + _test_contexts(shipped, classic_agi, self.ports.agi_without_ami)

    # --- running ---------------------------------------------------------------------------

    def start(self) -> None:
        log = (self.logs / "stdout").open("wb")
        self.process = subprocess.Popen(
            [str(self.binary), "-C", str(self.etc / "asterisk.conf"), "-f", "-n"],
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            env=self.env,
        )
        deadline = time.monotonic() + START_TIMEOUT_S
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"Asterisk ended at start: {self.tail('stdout')}")
            if self.cli("core waitfullybooted", check=False).returncode == 0:
                return
            time.sleep(0.3)
        raise RuntimeError(f"Asterisk not fully booted in {START_TIMEOUT_S} s")

    def cli(self, command: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        """A CLI command over the control socket (`asterisk -rx`)."""
        return subprocess.run(
            [str(self.binary), "-C", str(self.etc / "asterisk.conf"), "-rx", command],
            capture_output=True,
            text=True,
            timeout=30,
            check=check,
            env=self.env,
        )

    def log(self, name: str = "full") -> str:
        path = self.logs / name
        return path.read_text(encoding="utf-8", errors="replace") if path.exists() else ""

    def tail(self, name: str, lines: int = 30) -> str:
        return "\n".join(self.log(name).splitlines()[-lines:])

    def stop(self) -> None:
        if self.process is None or self.process.poll() is not None:
            return
        self.cli("core stop now", check=False)
        try:
            self.process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()


def _link(target: Path, link: Path) -> None:
    if not link.exists():
        link.symlink_to(target)


def _merge_sounds(into: Path, *sources: Path) -> None:
    """One sounds/en folder: the project's prompts and SAY fragments first, Asterisk's own
    (silence/1 for GET DATA, letters, digits the build has not) for the rest."""
    into.mkdir(parents=True, exist_ok=True)
    for source in sources:
        for path in sorted(source.rglob("*")):
            if path.is_file():
                target = into / path.relative_to(source)
                target.parent.mkdir(parents=True, exist_ok=True)
                if not target.exists():
                    target.symlink_to(path)


def _test_modules() -> str:
    shipped = (DIALPLAN / "modules.conf").read_text(encoding="utf-8")
    return re.sub(
        r"^require = (chan_pjsip|res_pjsip)\.so$", r"; (no SIP stack) \g<0>", shipped, flags=re.M
    )


def _test_logger() -> str:
    shipped = (DIALPLAN / "logger.conf").read_text(encoding="utf-8")
    return (
        shipped
        + """
; tests/asterisk: every verbose level and every key, to show what `full` keeps out.
everything => notice,warning,error,verbose(10),dtmf
"""
    )


def _test_contexts(shipped: str, classic_agi: Path, no_ami_port: int) -> str:
    """The stand-ins' contexts, and [ivrs-classic]: [ivrs] with its AGI() line replaced as
    docs/deploying-on-asterisk.md (5b) says."""
    ivrs = re.search(r"^\[ivrs\]\n(.*?)(?=^\[)", shipped, re.M | re.S)
    assert ivrs, "extensions.conf has no [ivrs] context"
    fastagi = " same => n,AGI(agi://${IVRS_AGI_HOST}:${IVRS_AGI_PORT}/ivrs,${EXTEN})\n"
    assert fastagi in ivrs.group(1)
    classic = ivrs.group(1).replace(fastagi, f" same => n,AGI({classic_agi},${{EXTEN}})\n")
    return f"""

; ---- tests/asterisk ---------------------------------------------------------------
[ivrs-classic]
{classic}
[ivrs-test-driven]
; The caller half of a test call: it waits; the test sends its keys over AMI (PlayDTMF)
; when the IVR plays the prompt that asks for them.
exten => caller,1,Wait(110)
 same => n,Hangup()
; Calls to a FastAGI server without AMI (the recording muted over AGI) and to classic AGI.
exten => no-ami,1,Set(IVRS_AGI_PORT={no_ami_port})
 same => n,Goto(ivrs,39023333,1)
exten => classic,1,Goto(ivrs-classic,39023333,1)

[ivrs-test-standins]
; The helpdesk: answers and stays on the line until the caller leaves.
exten => helpdesk,1,Answer()
 same => n,Verbose(1,ivrs-test: helpdesk answered ${{CHANNEL}})
 same => n,Wait(60)
 same => n,Hangup()
; The supervisor's phone for listening in: answers and listens.
exten => supervisor,1,Answer()
 same => n,Verbose(1,ivrs-test: supervisor answered ${{CHANNEL}})
 same => n,Wait(60)
 same => n,Hangup()
"""


def environment(token: str, backend_url: str, spool: Path) -> dict[str, str]:
    """Asterisk's environment: the token for ENV() and what the classic script reads."""
    return {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "HOME": os.environ.get("HOME", "/root"),
        "IVRS_API_TOKEN": token,
        "IVRS_BACKEND_URL": backend_url,
        "IVRS_SPOOL_DIR": str(spool),
        "IVRS_LOG_LEVEL": "info",
    }
