"""XenAPI: wire codecs, the dispatcher, sessions, tasks, events, and one handler module a class."""
