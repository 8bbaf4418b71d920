"""Sync: plan what to fetch and run the plan.

Public API: `engine.BackupEngine(session, archive, options, progress).run()`
→ `RunStats`, with `folder.BackupOptions` and the `folder.BackupProgress`
callback protocol.  plan.py decides (pure), engine.py gathers and executes,
recovery.py, fetch.py and commit.py are its parts.  This package never
prints; it reports through `BackupProgress` and returns `RunStats`.
"""
