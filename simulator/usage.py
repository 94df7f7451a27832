"""The usage text Asterisk sends inside a multi-line 520 (a build with XML documentation).

STREAM FILE, GET DATA, WAIT FOR DIGIT and SAY DIGITS are the captured lines (06, second
capture). The others are rendered from res_agi.c's XML documentation the way the captured ones
are (one line per paragraph, markup kept); they were not captured.
"""

from __future__ import annotations


def _para(text: str) -> str:
    return " ".join(text.split())


def _paras(*texts: str) -> list[str]:
    return [_para(text) for text in texts]


_SAY = """Say a given {what}, returning early if any of the given DTMF digits are received on the
    channel. Returns <literal>0</literal> if playback completes without a digit being pressed, or
    the ASCII numerical value of the digit if one was pressed or <literal>-1</literal> on
    error/hangup."""

_DATABASE = {
    "del": """Deletes an entry in the Asterisk database for a given
        <replaceable>family</replaceable> and <replaceable>key</replaceable>.""",
    "deltree": """Deletes a <replaceable>family</replaceable> or specific
        <replaceable>keytree</replaceable> within a <replaceable>family</replaceable> in the
        Asterisk database.""",
    "put": """Adds or updates an entry in the Asterisk database for a given
        <replaceable>family</replaceable>, <replaceable>key</replaceable>, and
        <replaceable>value</replaceable>.""",
}
_SUCCESS_1 = "Returns <literal>1</literal> if successful, <literal>0</literal> otherwise."

_CHANNEL_STATES = [
    "Channel is down and available.",
    "Channel is down, but reserved.",
    "Channel is off hook.",
    "Digits (or equivalent) have been dialed.",
    "Line is ringing.",
    "Remote end is ringing.",
    "Line is up.",
    "Line is busy.",
]

USAGE: dict[tuple[str, ...], list[str]] = {
    ("stream", "file"): [
        *_paras(
            """Send the given file, allowing playback to be interrupted by the given digits, if
            any. Returns <literal>0</literal> if playback completes without a digit being
            pressed, or the ASCII numerical value of the digit if one was pressed, or
            <literal>-1</literal> on error or if the channel was disconnected. If musiconhold is
            playing before calling stream file it will be automatically stopped and will not be
            restarted after completion.""",
            "It sets the following channel variables upon completion:",
            """<variable>PLAYBACKSTATUS</variable>: The status of the playback attempt as a text
            string.""",
        ),
        "    <value>SUCCESS</value>",
        "    <value>FAILED</value>",
    ],
    ("get", "data"): _paras(
        "Stream the given <replaceable>file</replaceable>, and receive DTMF data.",
        "Returns the digits received from the channel at the other end.",
    ),
    ("wait", "for", "digit"): _paras(
        """Waits up to <replaceable>timeout</replaceable> milliseconds for channel to receive a
        DTMF digit. Returns <literal>-1</literal> on channel failure, <literal>0</literal> if no
        digit is received in the timeout, or the numerical value of the ascii of the digit if one
        is received. Use <literal>-1</literal> for the <replaceable>timeout</replaceable> value if
        you desire the call to block indefinitely."""
    ),
    ("say", "digits"): _paras(_SAY.format(what="digit string")),
    ("say", "alpha"): _paras(_SAY.format(what="character string")),
    ("say", "number"): _paras(_SAY.format(what="number")),
    ("say", "time"): _paras(_SAY.format(what="time")),
    ("say", "datetime"): _paras(_SAY.format(what="time")),
    ("set", "variable"): ["Sets a variable to the current channel."],
    ("get", "variable"): _paras(
        """Returns <literal>0</literal> if <replaceable>variablename</replaceable> is not set.
        Returns <literal>1</literal> if <replaceable>variablename</replaceable> is set and returns
        the variable in parentheses.""",
        "Example return code: 200 result=1 (testvariable)",
    ),
    ("get", "full", "variable"): _paras(
        """Evaluates the given <replaceable>expression</replaceable> against the channel specified
        by <replaceable>channelname</replaceable>, or the current channel if
        <replaceable>channelname</replaceable> is not provided.""",
        """Unlike GET VARIABLE, the <replaceable>expression</replaceable> is processed in a manner
        similar to dialplan evaluation, allowing complex and built-in variables to be accessed,
        e.g. <literal>The time is ${EPOCH}</literal>""",
        """Returns <literal>0</literal> if no channel matching
        <replaceable>channelname</replaceable> exists, <literal>1</literal> otherwise.""",
        "Example return code: 200 result=1 (The time is 1578493800)",
    ),
    ("exec",): _paras(
        """Executes <replaceable>application</replaceable> with given
        <replaceable>options</replaceable>.""",
        """Returns whatever the <replaceable>application</replaceable> returns, or
        <literal>-2</literal> on failure to find <replaceable>application</replaceable>.""",
        """<note>NOTE:</note> exec does not evaluate dialplan functions and variables unless it is
        explicitly enabled by setting the <variable>AGIEXECFULL</variable> variable to
        <literal>yes</literal>.""",
    ),
    ("database", "get"): _paras(
        """Retrieves an entry in the Asterisk database for a given
        <replaceable>family</replaceable> and <replaceable>key</replaceable>.""",
        """Returns <literal>0</literal> if <replaceable>key</replaceable> is not set. Returns
        <literal>1</literal> if <replaceable>key</replaceable> is set and returns the variable in
        parenthesis.""",
        "Example return code: 200 result=1 (testvariable)",
    ),
    **{("database", verb): _paras(text, _SUCCESS_1) for verb, text in _DATABASE.items()},
    ("channel", "status"): [
        *_paras(
            """Returns the status of the specified <replaceable>channelname</replaceable>. If no
            channel name is given then returns the status of the current channel.""",
            "Return values:",
        ),
        *(f"    <enum>{n}</enum>: {state}" for n, state in enumerate(_CHANNEL_STATES)),
    ],
    ("hangup",): _paras(
        """Hangs up the specified channel. If no channel name is given, hangs up the current
        channel"""
    ),
    ("verbose",): _paras(
        """Sends <replaceable>message</replaceable> to the console via verbose message system.
        <replaceable>level</replaceable> is the verbose level (1-4). Always returns
        <literal>1</literal>"""
    ),
}
