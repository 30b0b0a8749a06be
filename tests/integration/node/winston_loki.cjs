// Loki push from winston-loki: protobuf compressed with snappy (its default when the
// snappy binding loads). LOKI_URL, TAG and AUTH ("user:password") from the test.
const winston = require("winston");
const LokiTransport = require("winston-loki");

async function main() {
  const tag = process.env.TAG;
  const transport = new LokiTransport({
    host: process.env.LOKI_URL,
    basicAuth: process.env.AUTH || undefined,
    labels: { app: "shop-node", env: "test" },
    json: false,
    format: winston.format.printf((info) => info.message),
    batching: true,
    interval: 0.2,
    replaceTimestamp: false,
    onConnectionError: (err) => {
      console.error("connection error", err);
      process.exitCode = 1;
    },
  });
  const logger = winston.createLogger({ transports: [transport] });
  logger.warn({ message: `stock low ${tag}`, labels: { component: "inventory" } });
  logger.error({ message: `stock gone ${tag}`, timestamp: Date.now() });
  await transport.flush();
  await transport.close();
  console.log(`content-type ${transport.batcher.contentType}`);
}

main().catch((err) => {
  console.error(err);
  process.exit(1);
});
