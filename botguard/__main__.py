from botguard.cli.app import main

main()
