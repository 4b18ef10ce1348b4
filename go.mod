module github.com/mxgate/mxgate

go 1.26.8

require github.com/yl2chen/cidranger v1.0.2

require github.com/stretchr/testify v1.12.1 // indirect
