package events_test

import (
	"context"
	"errors"
	"fmt"
	"log"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/touchstream/touchstream/events"
)

// A trusted producer (here, the recharge platform) publishes a typed event. The
// publisher validates it against its schema, seals personal fields with the customer's
// data key from the key service, and appends it to the customer's partition with its
// dedup key. The example needs a NATS server with the log provisioned
// (`touchstream streams apply`), so it has no output to check.
func ExamplePublisher() {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()

	nc, err := nats.Connect("nats://nats.touchstream.internal", nats.Name("recharge-platform"))
	if err != nil {
		log.Fatal(err)
	}
	defer nc.Close()

	keys := events.NewKeyClient(nc, events.KeyClientConfig{})
	p, err := events.NewPublisher(ctx, nc,
		events.WithSource("urn:touchstream:channel:recharge"),
		events.WithKeys(keys),
	)
	if err != nil {
		log.Fatal(err)
	}
	defer p.Close()

	ev, err := events.NewEvent("C-1001", time.Now(), events.RechargeCompleted{
		RechargeID:  "R-2026-000123",
		Amount:      events.CNY(5000), // 50 yuan paid
		Credited:    events.CNY(6000), // 60 yuan on the balance: a bonus promotion
		Method:      "wechat_pay",
		PromotionID: "PROMO-50-GET-60",
	})
	if err != nil {
		log.Fatal(err)
	}
	res, err := p.Publish(ctx, ev)
	switch {
	case errors.Is(err, events.ErrInvalid):
		log.Fatalf("refused, do not retry unchanged: %v", err)
	case errors.Is(err, events.ErrAckUnknown):
		log.Fatalf("maybe stored; publishing the same event again is safe: %v", err)
	case err != nil:
		log.Fatal(err)
	}
	fmt.Printf("stored in %s at sequence %d (duplicate: %v)\n", res.Stream, res.Seq, res.Duplicate)
}
