#!/bin/sh
# The extractor's helper: one encounter's metadata (extract.awk).
exec awk -f extract.awk -f block.awk -f detect.awk input
