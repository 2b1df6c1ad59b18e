module atrank.test/ffitests

go 1.24

require github.com/atrank/atrank/bindings/go v0.0.0-00010101000000-000000000000

replace github.com/atrank/atrank/bindings/go => ../../bindings/go
