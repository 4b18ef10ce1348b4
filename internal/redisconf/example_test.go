package redisconf_test

import (
	"fmt"
	"time"

	"github.com/mxgate/mxgate/internal/redisconf"
)

func ExampleDescribe() {
	fmt.Println(redisconf.Describe("redis+sentinel://gateway:s3cret@10.0.0.11,10.0.0.12:26380/mxgate/2"))
	fmt.Println(redisconf.Describe("rediss+cluster://gateway:s3cret@10.0.1.1:7000,10.0.1.2:7000,10.0.1.3:7000"))
	// Output:
	// sentinel master "mxgate" via 10.0.0.11:26379,10.0.0.12:26380 db 2
	// cluster seeds 10.0.1.1:7000,10.0.1.2:7000,10.0.1.3:7000 (TLS)
}

func ExampleParse() {
	opts, err := redisconf.Parse("rediss://gateway:s3cret@redis.internal:6380/1", redisconf.Options{
		TLS:     redisconf.TLSOptions{ServerName: "redis.internal"},
		Timeout: 200 * time.Millisecond,
	})
	if err != nil {
		fmt.Println(err)
		return
	}
	fmt.Println(opts.Addrs, opts.DB, opts.Username, opts.TLSConfig.ServerName, opts.ReadTimeout, opts.MaxRetries)

	_, err = redisconf.Parse("redis://gateway:s3cret@redis.internal:637900", redisconf.Options{})
	fmt.Println(err)
	// Output:
	// [redis.internal:6380] 1 gateway redis.internal 200ms -1
	// redisconf: invalid Redis URL: host 1: the port must be a number from 1 to 65535
}
