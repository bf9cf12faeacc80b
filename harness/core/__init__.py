"""What every layer uses: errors and exit codes, paths, run directories, locks, progress, sizes."""
