"""`ivrs admin ...`: accounts, tokens, vehicles and cargo, straight on IVRS_DATABASE_URL.

One module per concern, each registering its subcommands' arguments beside their actions;
command.py builds the parser from them and runs the chosen one. The backend is imported only
when a command runs (the IVR process, which builds the same parser, never loads it).
"""

from cli.admin.command import add_admin_commands, run_admin

__all__ = ["add_admin_commands", "run_admin"]
