"""The daemon as a whole: API end to end, limits, processes, the service, the command line, the tools."""
