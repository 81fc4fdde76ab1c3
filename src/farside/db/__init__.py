"""The pool database: persistent state in SQLite, a generation count and a change feed."""

from farside.db.changes import Change, Commit
from farside.db.database import Database
from farside.db.transaction import Transaction

__all__ = ["Change", "Commit", "Database", "Transaction"]
