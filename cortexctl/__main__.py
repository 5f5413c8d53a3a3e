"""Run cortexctl as ``python -m cortexctl``."""

from cortexctl.cli.app import main

if __name__ == "__main__":
    main()
