from bmc.cli.commands import main

main()
