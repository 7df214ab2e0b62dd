from rnnjit.cli.app import main

main()
