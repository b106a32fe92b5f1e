#!/bin/sh
# Prints the path of a working Python 3.13 (the Lambda runtime's version), or explains how to get one.
# Order: $PYTHON, python3.13 on PATH, then pyenv's installs (whose PATH shim only works when selected).
want="3.13"
works() {
    [ -n "$1" ] && "$1" -c "import sys; sys.exit(sys.version_info[:2] != (3, 13))" >/dev/null 2>&1
}
candidates="${PYTHON:-} $(command -v python3.13 2>/dev/null) /usr/local/bin/python3.13 /usr/bin/python3.13"
if command -v pyenv >/dev/null 2>&1; then
    root="$(pyenv root 2>/dev/null)"
    for dir in "$root"/versions/3.13*; do
        candidates="$candidates $dir/bin/python3.13"
    done
fi
for candidate in $candidates; do
    if works "$candidate"; then
        # Resolve shims to the real interpreter so later PATH changes cannot redirect it.
        "$candidate" -c "import sys; print(sys.executable)"
        exit 0
    fi
done
echo "error: Python $want is required (the Lambda runtime's version) and none was found." >&2
echo "       Install it (e.g. 'pyenv install $want' or your package manager) or set PYTHON=/path/to/python$want." >&2
exit 1
