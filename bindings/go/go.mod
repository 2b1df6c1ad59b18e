module github.com/atrank/atrank/bindings/go

go 1.24
