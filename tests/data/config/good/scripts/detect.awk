# Prints one JSON record per changelog entry heading.
/^## / { printf "{\"source\": \"%s\", \"line\": %d}\n", FILENAME, FNR }
