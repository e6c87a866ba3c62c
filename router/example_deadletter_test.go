package router_test

import (
	"context"
	"errors"
	"fmt"
	"log"

	"github.com/braidq/braid/router"
)

// Retry every dead letter of a queue, a page at a time, wherever the queue lived when its jobs
// died: each id goes to the shard it names, and a shard that is down fails only its own ids.
func ExampleClient_DeadLetterRetry() {
	ctx := context.Background()
	var client *router.Client // built as in ExampleClient_Insert
	var after *router.DeadLetter
	for {
		page, err := client.DeadLetters(ctx, "emails", 100, after)
		if err != nil {
			log.Fatal(err) // with page.Missing set, paging on would skip those shards' letters
		}
		if len(page.Letters) == 0 {
			return
		}
		ids := make([]int64, len(page.Letters))
		for i, l := range page.Letters {
			ids[i] = l.JobID
		}
		results, err := client.DeadLetterRetry(ctx, ids)
		var partial *router.BatchError
		switch {
		case errors.As(err, &partial):
			for _, f := range partial.Failures {
				fmt.Printf("shard %d: %d letters not retried: %v\n", f.ShardID, len(f.Jobs), f.Err)
			}
		case err != nil:
			log.Fatal(err)
		}
		for _, r := range results {
			if r != nil && r.HeldBy != 0 {
				fmt.Printf("job %d stays dead-lettered: job %d holds its unique key\n", r.JobID, r.HeldBy)
			}
		}
		after = &page.Letters[len(page.Letters)-1]
	}
}
