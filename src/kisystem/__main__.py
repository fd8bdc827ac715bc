from kisystem.cli.main import main

main()
