#!/bin/sh
set -e
echo "base setup"
