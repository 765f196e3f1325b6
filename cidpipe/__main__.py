from cidpipe.cli.main import main

main()
