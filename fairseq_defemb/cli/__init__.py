"""Console commands: each module parses options, calls the library, prints a summary and
maps errors to exit codes. Nothing here is imported by the library."""
