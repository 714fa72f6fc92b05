from medtune.apps.cli import main

main()
