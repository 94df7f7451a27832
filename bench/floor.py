"""The floor: a FastAGI server that does no work. It reads the `agi_*` header, then sends a call's
commands, recorded from the real server (one per line in a file), reading one reply line after
each and ignoring it, but for a hang-up (`HANGUP` or 511: then it closes). What the real server
costs beyond this is what its call flow, backend client and logs cost.

    python -m bench.floor --commands FILE [--host 127.0.0.1] [--port 0]   # prints: listening PORT
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import signal
from pathlib import Path


async def serve(commands: list[bytes], host: str, port: int) -> None:
    async def call(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        with contextlib.suppress(ConnectionError):
            while (await reader.readline()).strip():  # the header, up to its blank line
                pass
            for command in commands:
                writer.write(command)
                if (await reader.readline()).startswith((b"HANGUP", b"511")) or reader.at_eof():
                    break  # the caller is gone
        writer.close()

    server = await asyncio.start_server(call, host, port, backlog=4096)
    print("listening", server.sockets[0].getsockname()[1], flush=True)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    server.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--commands", required=True, type=Path)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0)
    args = parser.parse_args()
    commands = [line.encode() + b"\n" for line in args.commands.read_text().splitlines()]
    asyncio.run(serve(commands, args.host, args.port))


if __name__ == "__main__":
    main()
