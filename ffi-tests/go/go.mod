module atrank.test/ffitests

go 1.22
