"""File helpers every room may use: folders written under a temporary name keep the modes
a plain mkdir would give them once renamed."""

from __future__ import annotations

import os
from pathlib import Path


def give_default_modes(folder: Path) -> None:
    """Give `folder` and everything in it the modes mkdir and open would under the umask.

    mkdtemp makes its folder 0700 (and some writers make 0600 files) so that nobody else
    sees it while it fills; the rename keeps those modes, which would make a finished
    checkpoint or export private to its owner.
    """
    umask = os.umask(0)
    os.umask(umask)  # reading the umask means setting it; put it straight back
    for root, dirs, files in os.walk(folder):
        os.chmod(root, 0o777 & ~umask)
        for name in files:
            path = os.path.join(root, name)
            if os.path.islink(path):
                continue
            executable = os.stat(path).st_mode & 0o100
            os.chmod(path, (0o777 if executable else 0o666) & ~umask)
