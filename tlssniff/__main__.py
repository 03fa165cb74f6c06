from tlssniff.cli import main

main()
