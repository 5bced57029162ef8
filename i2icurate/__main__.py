from i2icurate.cli import main

main()
