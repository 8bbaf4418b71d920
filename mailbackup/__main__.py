from mailbackup.cli import main

main()
