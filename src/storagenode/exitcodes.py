"""Exit codes of the ``storagenode`` command, part of its contract with the keeper.

The numbers follow BSD ``sysexits.h`` where one fits, so that they do not collide with
a crash (1, or a negative signal number) or argparse's usage error (2).
"""

OK = 0
FAILURE = 1  # unexpected runtime failure: the keeper treats it as a crash
USAGE = 2  # bad command-line flags (argparse's own code)
SETUP_REFUSED = 64  # EX_USAGE: `setup` refused its input; the message says what to change
DOWNGRADE_REFUSED = 65  # EX_DATAERR: the database is newer than this code
MIGRATION_FAILED = 70  # EX_SOFTWARE: a schema migration failed (rolled back to its start)
STORAGE_UNAVAILABLE = 74  # EX_IOERR: storage dir missing, unwritable or another node's
NOT_CONFIGURED = 78  # EX_CONFIG: not set up (or config unreadable): needs `storagenode setup`
