class ScaffoldError(Exception):
    """Input the scaffolder refuses; its message is the one line the command prints."""
