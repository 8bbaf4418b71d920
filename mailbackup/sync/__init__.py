"""Sync: plan what to fetch and run the plan.

Public API: `Archive` (one account's directory: state, store, lock),
`BackupEngine.run()` and the `Progress` callback protocol.  This package
never prints; it reports through `Progress` and returns `RunStats`.
"""
