// The Outcome panel (see outcome_panel.h).
#include "app/panels/outcome_panel.h"

#include <QTextBrowser>

namespace mechscope::app {

OutcomePanel::OutcomePanel(PanelContext& ctx) : Panel(ctx) { view_ = new QTextBrowser; }

QWidget* OutcomePanel::widget() { return view_; }

QString OutcomePanel::text() const { return view_->toPlainText(); }

void OutcomePanel::changed(Change c) {
  if (c == Change::Models || c == Change::Input || c == Change::Example) ctx_.patched_what.clear();  // another input
  if (c == Change::Models || c == Change::Input || c == Change::Example) recompute();
  else if (c == Change::Interventions || c == Change::Outcome) render();
}

void OutcomePanel::recompute() {
  Workbench& wb = ctx_.wb;
  if (wb.model_count() == 0) return;
  if (wb.example_count() == 0) {  // a bare model (e.g. imported) has no task to draw examples from
    view_->setHtml(QObject::tr("<p>This model has no task attached, so there is no input yet.</p><p>Type tokens in the "
                               "Input panel (ids or vocabulary strings), or choose a task there and draw examples. "
                               "<code>mechscope-cli convert SRC -o OUT.h5 --task NAME</code> attaches a task for good.</p>"));
    return;
  }
  ctx_.job<std::pair<Outcome, Outcome>>(QObject::tr("outcome"), [this](const Progress&) {
    if (ctx_.wb.example_count() == 0) return std::make_pair(Outcome{}, Outcome{});
    return std::make_pair(ctx_.wb.outcome(false), ctx_.wb.outcome(true));
  }, [this](const std::pair<Outcome, Outcome>& r) {
    ctx_.before = r.first;
    ctx_.after = r.second;
    ctx_.changed(Change::Outcome);
  });
}

void OutcomePanel::render() {
  Workbench& wb = ctx_.wb;
  if (wb.model_count() == 0) return;
  const Outcome& before = ctx_.before;
  const Outcome& after = ctx_.after;
  const ModelSummary s = wb.summary();
  auto top = [](const Outcome& o) {
    QString t;
    for (const auto& [tok, p] : o.top) t += QStringLiteral("%1&nbsp;%2 ").arg(qs(tok).toHtmlEscaped()).arg(num(p));
    return t;
  };
  const auto ab = wb.ablated();
  QString list;
  for (const auto& h : ab) list += qs(h) + " ";
  QString html = QStringLiteral("<h3>%1</h3>").arg(qs(s.name));
  html += QStringLiteral("<p>verify: %1</p>").arg(s.verify.empty() ? QObject::tr("not run") : qs(s.verify));
  html += QStringLiteral("<table border=1 cellspacing=0 cellpadding=3><tr><th></th><th>before</th><th>after</th></tr>"
                         "<tr><td>accuracy</td><td>%1</td><td>%2</td></tr>"
                         "<tr><td>answer probability</td><td>%3</td><td>%4</td></tr>"
                         "<tr><td>logit difference</td><td>%5</td><td>%6</td></tr></table>")
              .arg(num(before.accuracy), num(after.accuracy), num(before.prob), num(after.prob), num(before.logit_diff),
                   num(after.logit_diff));
  html += QStringLiteral("<p>%1 examples; interventions: %2</p>").arg(before.examples)
              .arg(ab.empty() ? QObject::tr("none") : qs(wb.ablation_kind()) + " ablation of " + list);
  html += QStringLiteral("<p><b>current example</b>, answer <b>%1</b><br>before: %2<br>after: %3</p>")
              .arg(qs(after.target).toHtmlEscaped(), top(before), top(after));
  html += QStringLiteral("<p>%1 of %2 examples have a wrong answer after the interventions (Input &gt; Next wrong)</p>")
              .arg(after.wrong_examples.size()).arg(after.examples);
  if (!ctx_.patched_what.isEmpty()) {
    const Outcome& p = ctx_.patched;
    html += QStringLiteral("<p><b>patched</b> %1 (clean into corrupted; Patching panel): answer probability %2, accuracy "
                           "%3, logit difference %4 over %5 kept examples<br>current example, answer <b>%6</b>: %7</p>")
                .arg(ctx_.patched_what.toHtmlEscaped(), num(p.prob), num(p.accuracy), num(p.logit_diff))
                .arg(p.examples)
                .arg(qs(p.target).toHtmlEscaped(), top(p));
  }
  view_->setHtml(html);
}

}  // namespace mechscope::app
