"""kdviz app entry point: page config, the shared sidebar and the navigation (pages only wire widgets)."""

from ui.app import run_app

run_app()
