#![doc = "kiln-index"]
