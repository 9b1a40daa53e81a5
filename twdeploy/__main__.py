"""``python -m twdeploy``."""

from twdeploy.cli.app import main

main()
