"""`python -m mailbackup`, and the `mailbackup` console script (setup.cfg).

A run imports about 240 modules before its command starts, and what they
make lives as long as the process: the garbage collector's passes over it,
while importing and again at exit, find nothing to free.  So collection is
off until the command's module is loaded, and what exists then is frozen out
of its sight (cli/lazy.py): a no-op backup took 131 ms instead of 146.
"""

import gc


def main() -> None:
    gc.disable()
    from mailbackup.cli import main as run_command_line

    run_command_line()


if __name__ == "__main__":  # not when a worker process of a sweep imports it
    main()
