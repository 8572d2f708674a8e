#!/bin/sh
set -e
mkdir -p /etc/shop
echo "shop base 1" > /etc/shop/release
echo 'shop:x:1000:1000:shop:/srv:/bin/sh' >> /etc/passwd
echo 'shop:x:1000:' >> /etc/group
