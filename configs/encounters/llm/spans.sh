#!/bin/sh
# The segmenter's helper: the pieces of encounters in this chunk (spans.awk).
exec awk -f spans.awk -f block.awk -f detect.awk input
