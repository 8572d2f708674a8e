#!/bin/sh
/srv/bin/shop-version
echo "hello from the shop api"
