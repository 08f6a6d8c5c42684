// `mechscope --journey DIR FILES`: a user's session, scripted, for screenshots (scripts/screenshots.sh): open
// models, ablate, look at the map under the ablation, patch and click a cell, compare, type text and tokens, export
// every figure in every format, save the workspace and open it in a second window. Each step's window is saved as
// DIR/NN-step.png, the figures under DIR/figures; the steps and any error are printed.
#pragma once

#include <QString>
#include <QStringList>

namespace mechscope::app {

class MainWindow;

/// Runs the journey on a shown window whose files are opening; returns false when a step reported an error.
bool run_journey(MainWindow& w, const QString& dir);

}  // namespace mechscope::app
