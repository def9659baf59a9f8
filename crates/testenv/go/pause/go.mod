module tidegate.local/testenv/pause

go 1.26
