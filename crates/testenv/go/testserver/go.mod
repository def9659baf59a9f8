module tidegate.local/testenv/testserver

go 1.26
