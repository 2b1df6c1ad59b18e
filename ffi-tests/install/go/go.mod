module example.com/atrank-consumer

go 1.24

require github.com/atrank/atrank/bindings/go v0.1.0
