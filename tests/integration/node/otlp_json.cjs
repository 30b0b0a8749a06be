// OTLP/HTTP JSON from OpenTelemetry's Node exporter: two records, one with a trace
// context and attributes, one with a structured body. OTLP_URL and TAG from the test.
const { context, trace, TraceFlags } = require("@opentelemetry/api");
const { SeverityNumber } = require("@opentelemetry/api-logs");
const { OTLPLogExporter } = require("@opentelemetry/exporter-logs-otlp-http");
const { resourceFromAttributes } = require("@opentelemetry/resources");
const { LoggerProvider, SimpleLogRecordProcessor } = require("@opentelemetry/sdk-logs");

async function main() {
  const tag = process.env.TAG;
  const exporter = new OTLPLogExporter({ url: process.env.OTLP_URL });
  const provider = new LoggerProvider({
    resource: resourceFromAttributes({ "service.name": "node-billing" }),
    processors: [new SimpleLogRecordProcessor({ exporter })],
  });
  const logger = provider.getLogger("billing", "1.2.3");
  const traced = trace.setSpanContext(context.active(), {
    traceId: "5b8efff798038103d269b633813fc60c",
    spanId: "eee19b7ec3c1b174",
    traceFlags: TraceFlags.SAMPLED,
  });
  logger.emit({
    severityNumber: SeverityNumber.INFO,
    severityText: "INFO",
    body: `invoice sent ${tag}`,
    attributes: { "invoice.id": "inv-7", amount: 12.5 },
    timestamp: new Date(),
    context: traced,
  });
  logger.emit({
    severityNumber: SeverityNumber.ERROR,
    body: { event: "invoice failed", tag, retries: 3 },
    timestamp: new Date(),
  });
  await provider.forceFlush();
  await provider.shutdown();
}

main().catch((err) => {
  console.error(err);
  process.exit(1);
});
